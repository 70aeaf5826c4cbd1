"""Audio zero-shot classification end to end: generated tones ▶ class folders or shards ▶ a model ▶ result file.

The model is built by hand so that the right answer is known: its audio tower maps a clip's loudest mel band to
the class whose pitch is nearest, its text tower maps each class word to that class's direction. A correct
pipeline (labels, class order, prompts, crop and log-mel) scores 1.0; any mix-up shows as a lower number.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from data_tools.prepare import prepare_shards
from mmcl.data.audio import AudioFrontEndConfig, AudioTransform
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task, run_tasks, scalars
from mmcl.eval.cache import DecodedCache
from mmcl.eval.datasets import open_source
from mmcl.eval.embed import Loading, embed_source
from mmcl.eval.report import read_results, write_json
from mmcl.models.multimodal import MultimodalModel
from mmcl.models.towers import Tower

PITCHES = {"high": 4000.0, "low": 300.0, "middle": 1200.0}  # class folders sort to this order: labels 0, 1, 2
FRONT_END = AudioFrontEndConfig(sample_rate=16000, clip_seconds=0.5, n_fft=512, hop_length=160, n_mels=32)
DIM = 4  # one direction per class, plus one every embedding shares so none is zero


class LoudestBand(nn.Module):
    """log-mel [B, 1, mels, frames] ▶ one-hot of the class whose pitch is nearest the loudest band."""

    def __init__(self):
        super().__init__()
        fbanks = torchaudio.functional.melscale_fbanks(FRONT_END.n_fft // 2 + 1, 0.0, FRONT_END.sample_rate / 2,
                                                       FRONT_END.n_mels, FRONT_END.sample_rate)
        centres = fbanks.argmax(dim=0).double().clamp_min(1) * FRONT_END.sample_rate / FRONT_END.n_fft
        pitches = torch.tensor(list(PITCHES.values())).double()
        nearest = (centres[:, None].log() - pitches[None].log()).abs().argmin(dim=1)
        self.register_buffer("table", torch.cat([nn.functional.one_hot(nearest, DIM - 1).float(),
                                                 torch.full((len(centres), 1), 0.1)], dim=1))

    def forward(self, spec):
        return self.table[spec.mean(dim=-1).flatten(1).argmax(dim=1)]


class ClassWords(nn.Module):
    """Token ids [B, L] ▶ the sum of per-token vectors: class words point at their class, other tokens share one."""

    def __init__(self, tokenizer: SimpleTokenizer):
        super().__init__()
        table = torch.zeros(len(tokenizer.encoder), DIM)
        table[:, -1] = 0.01
        for label, word in enumerate(PITCHES):
            table[tokenizer.encode(word), label] = 1.0
        self.register_buffer("table", table)

    def forward(self, tokens):
        return self.table[tokens].sum(dim=1)


def tone_model():
    tokenizer = SimpleTokenizer(context_length=16)
    towers = {"audio": Tower(LoudestBand(), group_matcher={}, eval_transform=AudioTransform(FRONT_END, train=False)),
              "text": Tower(ClassWords(tokenizer), group_matcher={}, tokenizer=tokenizer)}
    model = MultimodalModel(towers, logit_scale_init=math.log(10), logit_scale_max=100)
    return model, {"audio": towers["audio"].eval_transform}, tokenizer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tones(root, per_class: int = 4):
    """CLASS/NAME.wav tones; lengths around the 0.5 s window (cropped or repeat-padded), two sample rates."""
    for c, (name, pitch) in enumerate(PITCHES.items()):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            rate = (16000, 22050)[i % 2]
            seconds = (0.3, 0.8)[(i // 2) % 2]
            t = np.arange(int(rate * seconds)) / rate
            wave = 0.5 * np.sin(2 * np.pi * pitch * (1 + 0.02 * i) * t)
            soundfile.write(root / name / f"{name}_{i}.wav", wave.astype("float32"), rate)
    return root


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    folders = write_tones(root / "folders")
    prepare_shards(folders, root / "shards", layout="class_folders", shard_size=5, progress=False,
                   templates=["a sound of {c}.", "This is a sound of {c}."])
    return folders, root / "shards"


def audio_task(path, **extra):
    return EvalConfig.model_validate({"tasks": [{"type": "zeroshot_classification", "modality": "audio",
                                                 "data": {"path": str(path)}, **extra}]}).tasks[0]


def test_audio_zero_shot_from_class_folders_and_shards(tones):
    folders, shards = tones
    model, transforms, tokenizer = tone_model()
    from_folders = evaluate_task(model, transforms, tokenizer, audio_task(folders)).result
    metrics = from_folders["metrics"]
    assert metrics["top1"] == 1.0 and metrics["mean_per_class_recall"] == 1.0
    assert metrics["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    assert metrics["top5"] is None and metrics["top5_note"] == "top-5 is undefined with 3 classes"
    assert from_folders["classnames"] == ["high", "low", "middle"]
    assert from_folders["dataset"]["format"] == "class_folders" and from_folders["dataset"]["num_items"] == 12
    assert from_folders["prompts"] == [["This is a sound of high."], ["This is a sound of low."],
                                       ["This is a sound of middle."]]  # LAION-CLAP's wording, recorded verbatim
    crop = from_folders["inputs"]["audio"]
    assert crop["sample_rate"] == 16000 and crop["clip_seconds"] == 0.5 and "repeated" in crop["crop"]
    json.dumps(from_folders)  # the whole result is JSON-ready

    # The same clips through `mmcl shards prepare` (wds layout: cls, classnames.txt, templates), 5 per shard.
    from_shards = evaluate_task(model, transforms, tokenizer, audio_task(shards)).result
    assert from_shards["dataset"]["format"] == "shards"
    assert from_shards["metrics"] == metrics
    assert from_shards["templates"] == ["a sound of {c}.", "This is a sound of {c}."]  # the set's templates file


def test_audio_zero_shot_from_a_csv_manifest_with_label_names(tones):
    folders, _ = tones
    rows = sorted(folders.rglob("*.wav"), key=lambda p: p.name, reverse=True)  # any order: labels are by name
    manifest = folders.parent / "clips.csv"
    manifest.write_text("audio,label\n" + "".join(f"{p.relative_to(folders.parent)},{p.parent.name}\n" for p in rows))
    model, transforms, tokenizer = tone_model()
    result = evaluate_task(model, transforms, tokenizer, audio_task(manifest)).result
    assert result["dataset"]["format"] == "manifest" and result["classnames"] == ["high", "low", "middle"]
    assert result["metrics"]["top1"] == 1.0 and result["metrics"]["num_samples"] == 12


def test_results_do_not_depend_on_batch_size_or_workers(tones):
    _, shards = tones
    model, transforms, tokenizer = tone_model()
    source = open_source(shards)
    one = embed_source(model, source, ["audio"], transforms, tokenizer, Loading(batch_size=1), need_labels=True)
    many = embed_source(model, source, ["audio"], transforms, tokenizer, Loading(batch_size=5, num_workers=2),
                        need_labels=True)
    assert one.keys == many.keys and len(one.keys) == 12  # workers share out shards, order is restored
    torch.testing.assert_close(one.features["audio"], many.features["audio"], rtol=0, atol=1e-6)
    assert one.labels.tolist() == many.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_run_tasks_restores_training_mode_and_reuses_decoded_data(tones, tmp_path):
    folders, _ = tones
    data = shutil.copytree(folders, tmp_path / "tones")
    model, transforms, tokenizer = tone_model()
    model.train()
    cache = DecodedCache(max_bytes=2**30)
    first = run_tasks(model, transforms, tokenizer, [audio_task(data, name="tones")], cache=cache)
    assert model.training
    assert list(first) == ["tones"] and first["tones"]["metrics"]["top1"] == 1.0
    for clip in data.rglob("*.wav"):  # a second call reads the decoded clips from the cache, not the files
        clip.write_bytes(b"")
    second = run_tasks(model, transforms, tokenizer, [audio_task(data, name="tones")], cache=cache)
    assert second["tones"]["metrics"] == first["tones"]["metrics"]
    assert scalars(second)["tones/top1"] == 1.0
    # run_tasks output, written as a trainer does, is a result file `mmcl eval --compare` reads.
    write_json(first, tmp_path / "first.json")
    assert [r["name"] for r in read_results(tmp_path / "first.json")] == ["tones"]


def test_data_beyond_the_cache_budget_is_decoded_again_not_kept(tones, tmp_path):
    folders, _ = tones
    data = shutil.copytree(folders, tmp_path / "tones")
    model, transforms, tokenizer = tone_model()
    cache = DecodedCache(max_bytes=10_000)  # smaller than the decoded clips
    first = run_tasks(model, transforms, tokenizer, [audio_task(data, name="tones")], cache=cache)
    assert first["tones"]["metrics"]["top1"] == 1.0
    assert cache.kept == {} and cache.used == 0 and len(cache.too_large) == 1
    again = run_tasks(model, transforms, tokenizer, [audio_task(data, name="tones")], cache=cache)
    assert again["tones"]["metrics"] == first["tones"]["metrics"]
    for clip in data.rglob("*.wav"):  # the files are read again at every call
        clip.write_bytes(b"")
    with pytest.raises(UserError, match="no usable samples"):
        run_tasks(model, transforms, tokenizer, [audio_task(data, name="tones")], cache=cache)
