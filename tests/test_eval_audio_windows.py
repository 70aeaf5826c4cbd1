"""Long audio in evaluation: `audio_windows: {mode: all}` embeds every window of a clip and averages them, so a
sound late in a long file counts; the default reads the first window, as training does."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from mmcl.eval import EvalConfig, run_tasks
from mmcl.eval.datasets import open_source
from mmcl.eval.embed import Loading, embed_source
from mmcl.eval.tasks import AudioWindowsConfig
from mmcl.models import create_model

RATE, SECONDS, TONE_AT = 16000, 11.0, 9.5  # tiny-audio's clip is 2 s: windows at 0, 2, 4, 6, 8 and 9 s


def clip(tone: bool) -> np.ndarray:
    noise = 0.01 * np.random.default_rng(0).standard_normal(int(SECONDS * RATE)).astype(np.float32)
    if tone:
        t = np.arange(int((SECONDS - TONE_AT) * RATE)) / RATE
        noise[int(TONE_AT * RATE):] += (0.5 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    return noise


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sounds")
    for name, tone in (("late tone", True), ("quiet", False)):
        (root / name.replace(" ", "_")).mkdir()
        soundfile.write(root / name.replace(" ", "_") / "a.flac", clip(tone), RATE)
    return root


@pytest.fixture(scope="module")
def tiny_audio():
    torch.manual_seed(0)
    return create_model("tiny-audio")


def embedded(tiny_audio, folders, windows: AudioWindowsConfig | None) -> dict[str, torch.Tensor]:
    model, transforms, tokenizer = tiny_audio
    data = embed_source(model.eval(), open_source(str(folders), "auto", None), ["audio"], transforms.eval, tokenizer,
                        Loading(audio_windows=windows), need_labels=True)
    return dict(zip(data.keys, data.features["audio"]))


def test_only_every_window_hears_a_tone_late_in_the_file(tiny_audio, folders):
    first = embedded(tiny_audio, folders, None)
    every = embedded(tiny_audio, folders, AudioWindowsConfig(mode="all"))
    late, quiet = sorted(first)  # keys: late_tone/a, quiet/a
    assert torch.equal(first[late], first[quiet])  # the first 2 s are the same noise
    assert not torch.allclose(every[late], every[quiet], atol=1e-3)


def test_the_average_is_of_each_window_embedded_on_its_own(tiny_audio, folders):
    model, transforms, _ = tiny_audio
    waveform = torch.from_numpy(clip(tone=True))[None]
    starts = [0, 2, 4, 6, 8, SECONDS - 2]  # the last window ends where the clip ends
    with torch.no_grad():
        windows = torch.stack([transforms.eval["audio"](waveform[:, int(s * RATE):int((s + 2) * RATE)], RATE)
                               for s in starts])
        expected = F.normalize(model.encode("audio", windows).mean(0), dim=-1)
    every = embedded(tiny_audio, folders, AudioWindowsConfig(mode="all"))
    torch.testing.assert_close(every[sorted(every)[0]], expected, rtol=0, atol=1e-4)  # batch shapes differ
    strided = embedded(tiny_audio, folders, AudioWindowsConfig(mode="all", stride_seconds=1.0))
    assert not torch.equal(strided[sorted(strided)[0]], every[sorted(every)[0]])  # 10 windows, not 6


def test_a_zero_shot_task_records_the_window_policy(tiny_audio, folders):
    model, transforms, tokenizer = tiny_audio
    config = EvalConfig.model_validate({"tasks": [{"type": "zeroshot_classification", "modality": "audio",
                                                   "data": {"path": str(folders)},
                                                   "audio_windows": {"mode": "all", "stride_seconds": 1.5}}]})
    (result,) = run_tasks(model, transforms.eval, tokenizer, config.tasks).values()
    assert result["audio_windows"] == {"mode": "all", "stride_seconds": 1.5, "max_seconds": 600.0}
    assert result["metrics"]["num_samples"] == 2


def test_the_cli_flags(folders, tmp_path, capsys):
    import json

    from pipelines.cli import main as mmcl

    flags = ["eval", "tiny-audio", "--data", str(folders), "--modality", "audio", "--output", str(tmp_path / "r.json")]
    assert mmcl([*flags, "--audio-windows", "all", "--audio-stride", "1"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["audio_windows"]["stride_seconds"] == 1.0
    assert mmcl([*flags, "--audio-stride", "1"]) == 2
    assert "--audio-stride spaces the windows of --audio-windows all" in capsys.readouterr().err
