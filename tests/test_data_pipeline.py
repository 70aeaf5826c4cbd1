"""The streaming loader: exact epochs over ranks and workers, determinism, masks, skipped samples, eval order."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mmcl.data import DataConfig, build_loader
from mmcl.data.audio import AudioFrontEndConfig, AudioTransform
from mmcl.data.failures import FailureCounter, SampleError
from mmcl.errors import UserError
from tests.shard_factory import image_text_samples, image_transforms, jpeg_bytes, tokenizer, tone, write_shards

TRANSFORMS = image_transforms(32)
TOKENIZER = tokenizer()


def keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["__key__"]]


def total_failures(batches) -> dict[str, int]:
    return dict(sum((Counter(b["__failures__"]) for b in batches), Counter()))


def test_two_ranks_two_workers_see_every_sample_once(tmp_path):
    write_shards(tmp_path, image_text_samples(40), per_shard=5)  # 8 shards for 2 ranks x 2 workers
    # 10 samples per worker: batches of 5 drop nothing (training drops a worker's last partial batch).
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=5, num_workers=2, shuffle_buffer=8)
    per_rank = [keys(build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True, epoch=3, seed=1, rank=rank,
                                  world_size=2)) for rank in range(2)]
    assert [len(k) for k in per_rank] == [20, 20]
    assert sorted(per_rank[0] + per_rank[1]) == [f"s{i:05d}" for i in range(40)]


def test_same_seed_same_batches_other_epoch_other_order(tmp_path):
    write_shards(tmp_path, image_text_samples(32, noisy=True), per_shard=4)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2, shuffle_buffer=16)

    def run(epoch, seed=7):
        return [(b["__key__"], b["image"]) for b in build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True,
                                                                 epoch=epoch, seed=seed)]

    first, again, other, other_seed = run(0), run(0), run(1), run(0, seed=8)
    assert [k for k, _ in first] == [k for k, _ in again]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, again))  # augmentation is seeded per worker
    assert [k for k, _ in first] != [k for k, _ in other]
    assert [k for k, _ in first] != [k for k, _ in other_seed]
    assert sorted(k for ks, _ in first for k in ks) == sorted(k for ks, _ in other for k in ks)
    # Same sample, other seed: another random crop.
    where = {k: (i, j) for i, (ks, _) in enumerate(other_seed) for j, k in enumerate(ks)}
    i, j = where[first[0][0][0]]
    assert not torch.equal(first[0][1][0], other_seed[i][1][j])


def test_missing_modalities_get_masks_and_placeholders(tmp_path):
    audio_cfg = AudioFrontEndConfig(clip_seconds=0.5)
    transforms = {**TRANSFORMS["eval"], "audio": AudioTransform(audio_cfg, train=False)}
    samples = [
        {"__key__": "all", "jpg": jpeg_bytes(), "txt": "red", "flac": tone()},
        {"__key__": "image_only", "jpg": jpeg_bytes()},
        {"__key__": "text_only", "txt": "lonely words"},
        {"__key__": "captions", "json": b'{"text": ["one", "two"]}', "jpg": jpeg_bytes(), "cls": b"3"},
        {"__key__": "audio_text", "wav": tone(), "txt": "a tone"},
    ]
    write_shards(tmp_path, samples, per_shard=5)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=5, num_workers=0, modalities=["image", "text", "audio"])
    (batch,) = list(build_loader(cfg, transforms, TOKENIZER, train=False))
    assert batch["__key__"] == ["all", "image_only", "text_only", "captions", "audio_text"]
    assert batch["image_mask"].tolist() == [True, True, False, True, False]
    assert batch["text_mask"].tolist() == [True, False, True, True, True]
    assert batch["audio_mask"].tolist() == [True, False, False, False, True]
    assert batch["image"].shape == (5, 3, 32, 32)
    assert batch["audio"].shape == (5, 1, audio_cfg.n_mels, audio_cfg.num_frames)
    assert torch.count_nonzero(batch["image"][2]) == 0 and torch.count_nonzero(batch["audio"][1]) == 0
    assert torch.count_nonzero(batch["audio"][0]) > 0
    assert torch.equal(batch["text"][2], TOKENIZER(["lonely words"])[0])
    assert torch.equal(batch["text"][3], TOKENIZER(["one"])[0])  # evaluation takes the first caption
    assert batch["label"].tolist() == [-1, -1, -1, 3, -1]


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    transforms = {**TRANSFORMS["train"], "audio": AudioTransform(AudioFrontEndConfig(clip_seconds=0.5), train=True)}
    good = [{**s, "flac": tone()} for s in image_text_samples(8)]
    bad = [
        {"__key__": "broken_jpeg", "jpg": b"\xff\xd8 not really a jpeg", "txt": "x"},
        {"__key__": "bad_utf8", "jpg": jpeg_bytes(), "txt": b"\xff\xfe\xfa"},
        {"__key__": "empty_caption", "jpg": jpeg_bytes(), "txt": "   "},
        {"__key__": "nothing_usable", "mp4": b"abc"},
        {"__key__": "broken_flac", "jpg": jpeg_bytes(), "txt": "x", "flac": tone()[:80]},
        {"__key__": "bad_label", "jpg": jpeg_bytes(), "txt": "x", "cls": b"seven"},
    ]
    write_shards(tmp_path, good[:4] + bad[:3] + good[4:] + bad[3:], per_shard=7)  # two shards
    truncated = tmp_path / "shard-000002.tar"
    write_shards(tmp_path / "whole", [{"__key__": "cut_off", "jpg": jpeg_bytes(noise_seed=0, size=64)}], per_shard=1)
    truncated.write_bytes((tmp_path / "whole" / "shard-000000.tar").read_bytes()[:1500])
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=1, num_workers=2, modalities=["image", "text", "audio"],
                     shuffle_buffer=4)
    batches = list(build_loader(cfg, transforms, TOKENIZER, train=True))
    assert sorted(k for b in batches for k in b["__key__"]) == [s["__key__"] for s in good]
    failures = total_failures(batches)
    assert {r: n for r, n in failures.items() if not r.startswith("unreadable")} == {
        "undecodable image": 1, "bad text": 2, "no usable modality": 1, "undecodable audio": 1, "bad label": 1}
    assert sum(n for r, n in failures.items() if r.startswith("unreadable")) == 1


def test_evaluation_keeps_file_order_every_sample_and_partial_batch(tmp_path):
    samples = image_text_samples(23)
    samples[9] = {"__key__": "corrupt", "jpg": b"nope", "txt": "x"}
    write_shards(tmp_path, samples, per_shard=4)  # 6 shards, the last one short
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=5, num_workers=2)
    batches = list(build_loader(cfg, TRANSFORMS["eval"], TOKENIZER, train=False))
    expected = [s["__key__"] for s in samples if s["__key__"] != "corrupt"]
    assert [len(b["__key__"]) for b in batches] == [5, 5, 5, 5, 2]
    assert keys(batches) == expected
    assert total_failures(batches) == {"undecodable image": 1}
    ranks = [keys(build_loader(cfg, TRANSFORMS["eval"], TOKENIZER, train=False, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(expected) and ranks[0] == [k for k in expected if k in ranks[0]]


def test_fewer_shards_or_samples_than_workers_is_fine_too_few_samples_fails_before_reading(tmp_path):
    write_shards(tmp_path, image_text_samples(6), per_shard=3)  # 2 shards for 2 ranks x 2 workers: slots share them
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=1, num_workers=2)
    per_rank = [list(build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True, rank=r, world_size=2))
                for r in (0, 1)]
    seen = keys(per_rank[0]) + keys(per_rank[1])
    assert len(keys(per_rank[0])) == len(keys(per_rank[1])) == 2 and len(set(seen)) == 4  # 6 // 4 slots: one each
    assert sum(total_failures(batches).get("dropped to balance ranks", 0) for batches in per_rank) == 2
    # Batches of 2: 6 samples give each of 2 ranks one worker's batch; the second worker of each rank stays idle.
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=2, num_workers=2)
    per_rank = [list(build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True, rank=r, world_size=2))
                for r in (0, 1)]
    assert [len(keys(batches)) for batches in per_rank] == [2, 2]
    assert len(set(keys(per_rank[0]) + keys(per_rank[1]))) == 4
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2)
    with pytest.raises(UserError, match=r"6 sample\(s\) in 2 shard\(s\) cannot give each of 2 process\(es\) a batch "
                                        r"of 4: need at least 8"):
        build_loader(cfg, TRANSFORMS["train"], TOKENIZER, train=True, rank=0, world_size=2)


def test_modalities_without_a_tower_or_unknown_fail_early(tmp_path):
    write_shards(tmp_path, image_text_samples(2), per_shard=2)
    with pytest.raises(UserError, match=r"lists \['audio'\] but the model has no tower"):
        build_loader(DataConfig(train_shards=str(tmp_path), modalities=["image", "audio"]), TRANSFORMS["train"],
                     TOKENIZER, train=False)
    with pytest.raises(UserError, match="unsupported modality"):
        build_loader(DataConfig(train_shards=str(tmp_path), modalities=["video"]), TRANSFORMS["train"],
                     TOKENIZER, train=False)


def test_failure_log_is_rate_limited(caplog):
    counter = FailureCounter(log_first=3)
    with caplog.at_level("WARNING", logger="mmcl.data"):
        for i in range(1000):
            counter(SampleError(f"k{i}", "undecodable image"))
    assert counter.take() == {"undecodable image": 1000} and counter.take() == {}
    named = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert named == [f"skipped sample 'k{i}': undecodable image" for i in range(3)]
    assert [r.getMessage().split()[0] for r in caplog.records if "so far" in r.getMessage()] == ["10", "100", "1000"]
