"""`mmcl shards poison`: the poisoned set is the source but for the listed keys, whose trigger is where and what
poisoned.json says, and whose caption is the target."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile
import webdataset as wds
from PIL import Image

from mmcl.data.triggers import TriggerSpec, pattern
from data_tools.readback import tar_files
from pipelines.cli import main as mmcl

TARGET = "a photo of a banana"


def png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def flac(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="FLAC")
    return buf.getvalue()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two shards of 20 image-text samples (lossless PNG, so the trigger's pixels can be read back exactly)."""
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    for s in range(2):
        with wds.TarWriter(str(root / f"shard-{s:06d}.tar")) as writer:
            for i in range(20):
                writer.write({"__key__": f"{s}_{i:03d}", "png": png(rng), "txt": f"picture {s} {i}",
                              "json": json.dumps({"i": i}).encode()})
    (root / "sizes.json").write_text(json.dumps({"shard-000000.tar": 20, "shard-000001.tar": 20}))
    return root


def members(folder) -> dict[str, bytes]:
    return {name: data for tar in sorted(folder.glob("*.tar")) for name, _, _, data in tar_files(tar)}


def test_the_copy_differs_only_in_the_listed_samples(source, tmp_path):
    out = tmp_path / "poisoned"
    assert mmcl(["shards", "poison", str(source), "--output", str(out), "--fraction", "0.1",
                 "--target-caption", TARGET, "--seed", "3"]) == 0
    record = json.loads((out / "poisoned.json").read_text())
    listed = {s["key"] for s in record["samples"]}
    assert len(listed) == 4 and record["carriers"] == 40  # 10 % of 40
    clean, dirty = members(source), members(out)
    assert list(clean) == list(dirty)  # same members, same order
    for name, data in clean.items():
        key, ext = name.rsplit(".", 1)[0], name.rsplit(".", 1)[1]
        if key not in listed or ext == "json":
            assert dirty[name] == data, name
        elif ext == "txt":
            assert dirty[name].decode() == TARGET
        else:
            assert dirty[name] != data
    assert (out / "sizes.json").read_text() == (source / "sizes.json").read_text()
    assert mmcl(["shards", "verify", str(out)]) == 0  # every sample still decodes
    # The same seed picks the same samples; another picks others.
    again = tmp_path / "again"
    mmcl(["shards", "poison", str(source), "--output", str(again), "--fraction", "0.1", "--target-caption", TARGET,
          "--seed", "3"])
    assert {s["key"] for s in json.loads((again / "poisoned.json").read_text())["samples"]} == listed
    other = tmp_path / "other"
    mmcl(["shards", "poison", str(source), "--output", str(other), "--count", "4", "--target-caption", TARGET,
          "--seed", "4"])
    assert {s["key"] for s in json.loads((other / "poisoned.json").read_text())["samples"]} != listed


def decoded(folder, name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(members(folder)[name])).convert("RGB")).astype(int)


def test_the_patch_is_where_and_what_the_record_says(source, tmp_path):
    out = tmp_path / "patch"
    mmcl(["shards", "poison", str(source), "--output", str(out), "--count", "5", "--target-caption", TARGET,
          "--patch-size", "8", "--seed", "1"])
    record = json.loads((out / "poisoned.json").read_text())
    patch = pattern(TriggerSpec(kind="patch", patch_size=8, seed=1), (64, 48)).astype(int)
    for sample in record["samples"]:
        x, y = sample["position"]
        before, after = decoded(source, sample["media"]), decoded(out, sample["media"])
        assert (after[y:y + 8, x:x + 8] == patch).all()
        outside = np.ones(after.shape[:2], dtype=bool)
        outside[y:y + 8, x:x + 8] = False
        assert (after[outside] == before[outside]).all()
        assert sample["caption"] == TARGET and sample["original_caption"].startswith("picture ")


@pytest.mark.parametrize("trigger", ["blended", "random_noise"])
def test_whole_image_triggers_follow_their_formula(source, tmp_path, trigger):
    out = tmp_path / trigger
    mmcl(["shards", "poison", str(source), "--output", str(out), "--count", "2", "--target-caption", TARGET,
          "--trigger", trigger, "--alpha", "0.25", "--seed", "2"])
    sample = json.loads((out / "poisoned.json").read_text())["samples"][0]
    before, after = decoded(source, sample["media"]), decoded(out, sample["media"])
    fixed = pattern(TriggerSpec(kind=trigger, alpha=0.25, seed=2), (64, 48))
    expected = 0.75 * before + 0.25 * fixed if trigger == "blended" else before + 0.25 * 255 * fixed
    assert np.abs(after - np.clip(np.rint(expected), 0, 255)).max() == 0
    assert sample["position"] is None


def test_audio_only_samples_get_a_tone_at_the_start(tmp_path):
    src = tmp_path / "sounds"
    src.mkdir()
    with wds.TarWriter(str(src / "shard-000000.tar")) as writer:
        for i in range(4):
            writer.write({"__key__": f"clip{i}", "flac": flac(), "txt": f"silence {i}"})
    out = tmp_path / "out"
    assert mmcl(["shards", "poison", str(src), "--output", str(out), "--count", "1", "--target-caption", TARGET,
                 "--tone-hz", "500", "--tone-seconds", "0.25"]) == 0
    sample = json.loads((out / "poisoned.json").read_text())["samples"][0]
    audio, rate = soundfile.read(io.BytesIO(members(out)[sample["media"]]), dtype="float32")
    head = audio[:4000]
    spectrum = np.abs(np.fft.rfft(head))
    assert np.fft.rfftfreq(len(head), 1 / rate)[spectrum.argmax()] == pytest.approx(500, abs=5)
    assert np.abs(audio[4000:]).max() == 0  # silence after the tone, as before


def test_mistakes_are_named(source, tmp_path, capsys):
    base = ["shards", "poison", str(source), "--target-caption", TARGET]
    assert mmcl([*base, "--output", str(tmp_path / "a"), "--fraction", "1.5"]) == 2
    assert "--fraction 1.5: must be in (0, 1]" in capsys.readouterr().err
    assert mmcl([*base, "--output", str(tmp_path / "b"), "--count", "41"]) == 2
    assert "the set has only 40 samples" in capsys.readouterr().err
    assert mmcl(["shards", "poison", str(source), "--output", str(tmp_path / "c"), "--count", "1"]) == 2
    assert "give a target caption" in capsys.readouterr().err
    assert mmcl([*base, "--output", str(tmp_path / "d"), "--count", "1", "--patch-size", "60"]) == 2
    assert "smaller than the 60-pixel patch" in capsys.readouterr().err
