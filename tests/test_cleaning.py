"""Cleaning a poisoned training set: CleanCLIP's in-modal term over second augmented views (data.second_view, loss
inmodal) against Eq. 2 written out as loops, and data.drop_flagged passing over exactly the flagged keys."""

from __future__ import annotations

import json
import math
from collections import Counter

import pyarrow
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mmcl.config import load_config
from mmcl.data import DataConfig, build_loader
from mmcl.data.flagged import FLAGGED, DropFlaggedConfig, flagged_keys
from mmcl.data.pipeline import DROPPED
from mmcl.data.views import SecondViewConfig
from mmcl.errors import UserError
from mmcl.losses import create_loss
from mmcl.training.config import PretrainConfig
from mmcl.training.preflight import check_compatible
from pipelines.pretrain import train
from tests.shard_factory import image_text_samples, image_transforms, tokenizer, write_shards
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse: reproducible CPU maths)
from tests.test_train_compile import shards  # noqa: F401  (fixture: one shard of 24 shapes)
from tests.train_fixtures import overrides

TRANSFORMS = image_transforms(32)
TOKENIZER = tokenizer()


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def eq2_by_loops(views: dict[str, tuple[torch.Tensor, torch.Tensor]], scale: float) -> float:
    """CleanCLIP Eq. 2: −1/(M N) Σ_m Σ_j log( exp(s⟨x_j, x̃_j⟩) / Σ_k exp(s⟨x_j, x̃_k⟩) ), one scalar at a time."""
    total = 0.0
    for x, x_view in views.values():
        n = len(x)
        for j in range(n):
            numerator = math.exp(scale * float(x[j] @ x_view[j]))
            denominator = sum(math.exp(scale * float(x[j] @ x_view[k])) for k in range(n))
            total -= math.log(numerator / denominator)
    return total / (len(views) * n)


def test_inmodal_loss_is_cleanclip_eq2():
    image, image_view, text, text_view = (unit(7, 5, seed) for seed in range(4))
    outputs = {"image": image, "image_view": image_view, "text": text, "text_view": text_view,
               "logit_scale": torch.tensor(3.0, dtype=torch.float64)}
    terms = create_loss("inmodal")(outputs)
    assert list(terms) == ["inmodal/image-text"]
    expected = eq2_by_loops({"image": (image, image_view), "text": (text, text_view)}, 3.0)
    assert terms["inmodal/image-text"].item() == pytest.approx(expected, rel=1e-12)
    # One direction only: rows are the originals, columns the views (swapping them changes the value).
    swapped = {**outputs, "image": image_view, "image_view": image, "text": text_view, "text_view": text}
    assert create_loss("inmodal")(swapped)["inmodal/image-text"].item() != pytest.approx(expected, rel=1e-6)


def test_inmodal_uses_only_rows_that_have_the_modality():
    image, image_view = unit(6, 4, 10), unit(6, 4, 11)
    mask = torch.tensor([True, False, True, True, False, True])
    outputs = {"image": image, "image_view": image_view, "logit_scale": torch.tensor(2.0, dtype=torch.float64)}
    loss = create_loss("inmodal", modalities=["image"])(outputs, {"image_mask": mask})["inmodal/image"]
    assert loss.item() == pytest.approx(eq2_by_loops({"image": (image[mask], image_view[mask])}, 2.0), rel=1e-12)


def test_inmodal_without_a_view_names_the_setting():
    outputs = {"image": unit(3, 4, 0), "text": unit(3, 4, 1), "logit_scale": torch.tensor(1.0)}
    with pytest.raises(UserError, match="data.second_view"):
        create_loss("inmodal")(outputs)


def test_second_views_are_decoded_augmented_and_collated(tmp_path):
    write_shards(tmp_path, image_text_samples(8, noisy=True), per_shard=8)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=0,
                     second_view=SecondViewConfig(text_augment={"word_drop": 0.5}))
    batches = list(build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True))
    for batch in batches:
        assert batch["image_view"].shape == batch["image"].shape
        assert not torch.equal(batch["image_view"], batch["image"])
        assert torch.equal(batch["image_view_mask"], batch["image_mask"])
        assert torch.equal(batch["text_view_mask"], batch["text_mask"])
        assert batch["text_view"].shape == batch["text"].shape
    # A caption is "caption N": the view keeps one of its two words, so it differs from it in some samples.
    texts = torch.cat([b["text"] for b in batches])
    views = torch.cat([b["text_view"] for b in batches])
    assert (texts != views).any(dim=1).any()
    # Evaluation never makes views.
    (evaluated,) = list(build_loader(cfg.model_copy(update={"batch_size": 8}), TRANSFORMS["eval"], TOKENIZER,
                                     train=False))
    assert "image_view" not in evaluated and "text_view" not in evaluated


def test_an_audio_view_is_another_window_of_the_clip_and_a_missing_image_has_no_view(tmp_path):
    from mmcl.data.audio import AudioFrontEndConfig, AudioTransform
    from tests.shard_factory import jpeg_bytes, tone

    samples = [{"__key__": f"a{i}", "flac": tone(2.0, hz=300.0 + 40 * i), "txt": f"tone {i}"} for i in range(3)]
    samples.append({"__key__": "picture", "jpg": jpeg_bytes(noise_seed=1), "txt": "a picture"})
    write_shards(tmp_path, samples, per_shard=4)
    transforms = {**TRANSFORMS["train"], "audio": AudioTransform(AudioFrontEndConfig(clip_seconds=0.5), train=True)}
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=0, modalities=["image", "audio", "text"],
                     second_view=SecondViewConfig(modalities=["image", "audio"]))
    (batch,) = list(build_loader(cfg, transforms, TOKENIZER, train=True))
    audio = batch["audio_mask"]
    assert audio.sum() == 3 and torch.equal(batch["audio_view_mask"], audio)
    assert batch["audio_view"].shape == batch["audio"].shape
    # A 0.5 s window drawn twice from a 2 s clip: another stretch of the tone, not a copy of the first.
    assert not torch.equal(batch["audio_view"][audio], batch["audio"][audio])
    assert torch.equal(batch["image_view_mask"], batch["image_mask"]) and batch["image_mask"].sum() == 1
    assert batch["image_view"][~batch["image_mask"]].abs().sum() == 0  # the placeholder, like the image's own


def test_second_view_settings_are_checked(shards, tmp_path):
    with pytest.raises(ValidationError, match="second_view.modalities lists \\['audio'\\]"):
        DataConfig(train_shards="x", second_view={"modalities": ["audio"]})
    with pytest.raises(ValidationError, match="every edit off"):
        DataConfig(train_shards="x", second_view={"text_augment": {"word_drop": 0}})
    base = overrides(shards, tmp_path / "run")
    no_view = load_config(PretrainConfig, "configs/demo.yaml", [*base, "loss=[{name: clip}, {name: inmodal}]"])
    with pytest.raises(UserError, match="reads a second view of \\['image', 'text'\\]"):
        check_compatible(no_view)
    unused = load_config(PretrainConfig, "configs/demo.yaml", [*base, "data.second_view={}"])
    with pytest.raises(UserError, match="no loss term reads a second view"):
        check_compatible(unused)


def scores_table(path, keys, scores, shards=None):
    columns = {"key": keys, "knn_image": scores}
    if shards is not None:
        columns["shard"] = shards
    pq.write_table(pyarrow.table(columns), path)
    return str(path)


def test_drop_flagged_passes_over_exactly_the_flagged_keys(tmp_path):
    data = tmp_path / "shards"
    write_shards(data, image_text_samples(40), per_shard=10)
    keys = [f"s{i:05d}" for i in range(40)]
    flagged = {"s00003", "s00011", "s00012", "s00027", "s00030", "s00039"}
    scores = [10.0 if k in flagged else float(i % 5) for i, k in enumerate(keys)]
    table = scores_table(tmp_path / "audit.parquet", keys, scores)
    for rule in ({"threshold": 5.0}, {"fraction": 6 / 40}):
        cfg = DataConfig(train_shards=str(data), batch_size=4, num_workers=2, shuffle_buffer=8,
                         drop_flagged=DropFlaggedConfig(scores=table, score="knn_image", **rule))
        batches = list(build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True, epoch=1, seed=3))
        seen = [k for b in batches for k in b["__key__"]]
        counts = sum((Counter(b["__failures__"]) for b in batches), Counter())
        assert not flagged & set(seen)
        assert counts[FLAGGED] == len(flagged)
        assert len(seen) + counts[FLAGGED] + counts[DROPPED] == 40 and len(set(seen)) == len(seen)


def test_drop_flagged_reads_shard_names_and_refuses_bad_tables(tmp_path):
    table = scores_table(tmp_path / "a.parquet", ["k1", "k1", "k2"], [9.0, 1.0, 8.0],
                         ["shard-000000.tar", "shard-000001.tar", "shard-000001.tar"])
    chosen = flagged_keys(DropFlaggedConfig(scores=table, score="knn_image", threshold=5))
    assert {"__key__": "k1", "__url__": "/data/shard-000000.tar"} in chosen
    assert {"__key__": "k1", "__url__": "/data/shard-000001.tar"} not in chosen
    assert {"__key__": "k2", "__url__": "/data/shard-000001.tar"} in chosen
    with pytest.raises(UserError, match="no column 'dao_image'"):
        flagged_keys(DropFlaggedConfig(scores=table, score="dao_image", threshold=5))
    nan = scores_table(tmp_path / "b.parquet", ["k1", "k2"], [1.0, float("nan")])
    with pytest.raises(UserError, match="row 1 \\(key 'k2'\\) has score knn_image = nan"):
        flagged_keys(DropFlaggedConfig(scores=nan, score="knn_image", fraction=0.5))
    with pytest.raises(UserError, match="not found"):
        flagged_keys(DropFlaggedConfig(scores=str(tmp_path / "none.parquet"), score="knn_image", threshold=1))
    with pytest.raises(ValidationError, match="exactly one of threshold and fraction"):
        DropFlaggedConfig(scores=table, score="knn_image")


def test_training_with_inmodal_term_and_drop_flagged(shards, tmp_path):
    keys = [f"000_{i:04d}" for i in range(24)]
    table = scores_table(tmp_path / "audit.parquet", keys, [1.0 if i < 8 else 0.0 for i in range(24)])
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, "configs/demo.yaml", [
        *overrides(shards, out, **{"train.steps": 2, "data.num_workers": 0, "train.cpu_threads": 2}),
        "loss=[{name: clip}, {name: inmodal, weight: 0.5}]", "data.second_view={}",
        f"data.drop_flagged={{scores: {table}, score: knn_image, threshold: 0.5}}"])
    threads = torch.get_num_threads()
    train(cfg)
    assert torch.get_num_threads() == threads  # the run's two compute threads end with it
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "inmodal/image-text" in r]
    assert len(steps) == 2 and all(math.isfinite(r["inmodal/image-text"]) for r in steps)
    # total = clip + 0.5 inmodal, as configured
    for r in steps:
        assert r["loss"] == pytest.approx(r["clip/image-text"] + 0.5 * r["inmodal/image-text"], rel=1e-5)
    assert steps[-1][f"decode_failures/{FLAGGED}"] == 8  # 16 samples left: two batches of 8, nothing else dropped
