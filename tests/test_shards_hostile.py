"""Hostile input to `mmcl shards`: every bad entry, row or file is named and counted, nothing crashes, good
samples beside it are kept, and sets written by other tools (no sizes.json) are accepted."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import webdataset
from PIL import Image
from webdataset import TarWriter

from data_tools.prepare import prepare_shards
from data_tools.stats import collect_stats
from data_tools.verify import verify
from mmcl.data.shards import expand_urls
from mmcl.data.streams import read_shards
from tests.shards_fixtures import UserError, image_bytes, make_pairs, read_tar, run_cli

ROOT = Path(__file__).resolve().parent.parent


def _wav(samples, rate: int, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.asarray(samples, dtype="float32"), rate, format="WAV", subtype=subtype)
    return out.getvalue()


def _with(value: float) -> np.ndarray:
    """0.1 s of float samples at 16 kHz, one of them `value`."""
    wave = np.zeros(1600, dtype="float32")
    wave[100] = value
    return wave


def _stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


def _written(out: Path) -> list[str]:
    return [key for tar in sorted(out.glob("*.tar")) for key in read_tar(tar)]


def _failed(out: Path) -> dict[str, str]:
    return {f["key"]: f"{f['reason']}: {f['detail']}" for f in _stats(out)["failures"]}


# A child process whose address space is capped a little above what its imports take: code that tries to
# allocate gigabytes fails there quickly instead of taking the machine's memory.
_LIMITED_CHILD = """
import resource, sys
from tests.shards_fixtures import run_cli
import data_tools.prepare, mmcl.data.audio  # everything prepare loads, before the cap is measured
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
cap = size + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.exit(run_cli(*sys.argv[1:]))
"""


def _prepare_within_a_gib(*argv) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _LIMITED_CHILD, "shards", "prepare", *map(str, argv), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measures the child's size in /proc")

# --- verify and stats -------------------------------------------------------------------------------------------

HOSTILE_ENTRIES = {
    "list_json": ("json", b"[1, 2]", "bad_json", "json is a list"),
    "int_text": ("json", b'{"text": 5}', "bad_json", "json 'text' is a int"),
    "dict_text": ("json", b'{"text": {"x": "y"}}', "bad_json", "json 'text' is a dict"),
    "empty_text": ("json", b'{"text": []}', "bad_json", "json 'text' is an empty list"),
    "huge_cls": ("cls", b"99999999999999999999", "bad_cls", "outside 0..2147483647"),
    "negative_cls": ("cls", b"-3", "bad_cls", "label -3 is outside"),
    "word_cls": ("cls", b"abc", "bad_cls", "label 'abc' is not an integer"),
    "nan_audio": ("wav", _wav(_with(np.nan), 16000, "FLOAT"), "bad_audio", "NaN or infinite"),
    "inf_audio": ("wav", _wav(_with(np.inf), 16000, "FLOAT"), "bad_audio", "NaN or infinite"),
    "no_frames": ("wav", _wav(np.zeros(0), 16000), "bad_audio", "no samples"),
    "one_hertz": ("wav", _wav(np.zeros(100), 1), "bad_audio", "sample rate 1 Hz is outside"),
    "giga_hertz": ("wav", _wav(np.zeros(100), 10**9), "bad_audio", "sample rate 1000000000 Hz is outside"),
}


def _set_with_hostile_shard(tmp_path) -> Path:
    """A prepared set of two good pairs plus a second shard, listed in sizes.json, of hostile entries."""
    out = tmp_path / "out"
    prepare_shards(make_pairs(tmp_path / "src", 2), out, progress=False)
    with TarWriter(str(out / "shard-000001.tar"), encoder=False) as tar:
        for key, (ext, data, _, _) in HOSTILE_ENTRIES.items():
            tar.write({"__key__": key, "txt": b"a caption", ext: data})
    sizes = json.loads((out / "sizes.json").read_text())
    (out / "sizes.json").write_text(json.dumps({**sizes, "shard-000001.tar": len(HOSTILE_ENTRIES)}))
    return out


def test_verify_names_every_malformed_json_label_and_audio_entry(tmp_path, capsys):
    out = _set_with_hostile_shard(tmp_path)

    assert run_cli("shards", "verify", out) == 1

    text = capsys.readouterr().out
    assert f"FAILED: {len(HOSTILE_ENTRIES)} problem(s)" in text
    for key, (ext, _, reason, what) in HOSTILE_ENTRIES.items():
        line = next((line for line in text.splitlines() if f": {key}.{ext} does not decode" in line), None)
        assert line is not None, f"{key} not named in:\n{text}"
        assert f"({reason}: " in line and what in line, line


def test_stats_counts_what_headers_show_instead_of_crashing(tmp_path, capsys):
    out = _set_with_hostile_shard(tmp_path)

    summary, _ = collect_stats(out)

    # stats reads audio headers only (verify is the full decode), so NaN/inf samples are verify's to find.
    assert summary["samples"] == 2 + len(HOSTILE_ENTRIES)
    assert summary["read_failures_by_reason"] == {"bad_audio": 3, "bad_cls": 3, "bad_json": 4}
    assert run_cli("shards", "stats", out) == 0
    assert "entries that do not decode: 3 bad_audio, 3 bad_cls, 4 bad_json" in capsys.readouterr().out


# --- sets written by other tools --------------------------------------------------------------------------------

def _foreign_set(folder: Path) -> Path:
    """Five samples in shards of three, written by plain webdataset: no sizes.json, no prepare.json."""
    folder.mkdir()
    with webdataset.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=3, verbose=0) as sink:
        for i in range(5):
            sink.write({"__key__": f"s{i}", "jpg": image_bytes(), "txt": f"caption {i}", "cls": i})
    return folder


def test_a_set_without_sizes_json_passes_verify_with_a_note(tmp_path, capsys):
    out = _foreign_set(tmp_path / "foreign")

    assert run_cli("shards", "verify", out) == 0
    text = capsys.readouterr().out
    assert "5 samples in 2 shard(s)" in text and "OK" in text
    assert "note: no sizes.json" in text and "--write-sizes" in text


def test_stats_write_sizes_counts_the_samples_and_verify_then_compares(tmp_path, capsys):
    out = _foreign_set(tmp_path / "foreign")

    assert run_cli("shards", "stats", out, "--write-sizes") == 0

    assert json.loads((out / "sizes.json").read_text()) == {"shard-000000.tar": 3, "shard-000001.tar": 2}
    assert not list(out.glob("*.tmp"))
    report = verify(out)
    assert report["ok"] and report["notes"] == [] and report["samples"] == 5
    # nothing in mmcl reads sizes.json; its shard listing and reader take the set with the file beside it
    raws = list(read_shards(expand_urls(str(out)), handler=lambda exn: False))
    assert [raw["__key__"] for raw in raws] == [f"s{i}" for i in range(5)]
    # the counts are now checked: a shard losing a sample is reported against sizes.json
    with TarWriter(str(out / "shard-000001.tar"), encoder=False) as tar:
        tar.write({"__key__": "s3", "jpg": image_bytes(), "txt": b"caption 3"})
    assert "shard-000001.tar: 1 samples read, sizes.json says 2" in verify(out)["problems"]


def test_write_sizes_is_refused_for_a_truncated_shard_or_an_unmerged_prepare(tmp_path):
    out = _foreign_set(tmp_path / "foreign")
    tar = out / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:1500])
    with pytest.raises(UserError, match=r"not writing sizes\.json: shard-000001\.tar is truncated or corrupt"):
        collect_stats(out, write_sizes=True)
    assert not (out / "sizes.json").exists()

    prepared = tmp_path / "prepared"
    prepare_shards(make_pairs(tmp_path / "src", 2), prepared, progress=False)
    (prepared / "sizes.json").unlink()  # as while --num-parts jobs are outstanding
    assert not verify(prepared)["ok"]  # a set prepare has not finished still fails
    with pytest.raises(UserError, match="run `mmcl shards merge` instead"):
        collect_stats(prepared, write_sizes=True)


# --- manifests --------------------------------------------------------------------------------------------------

def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_manifest_media_cells_that_are_not_paths_are_bad_rows(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    manifest = _jsonl(tmp_path / "m.jsonl", [
        {"key": "good", "image": "ok.jpg", "caption": "fine"},
        {"key": "number", "image": 5, "caption": "b"},
        {"key": "listed", "image": ["ok.jpg"], "caption": "c"},
        {"key": "mapping", "audio": {"path": "x.wav"}, "caption": "d"},
        {"key": "textonly", "image": "", "caption": "no image is fine"},
    ])
    out = tmp_path / "out"

    prepare_shards(manifest, out, progress=False)

    assert _stats(out)["failures_by_reason"] == {"bad_manifest_row": 3}
    failed = _failed(out)
    assert "m.jsonl row 2: image 5 is a int, expected a path string" in failed["number"]
    assert "m.jsonl row 3: image ['ok.jpg'] is a list" in failed["listed"]
    assert "m.jsonl row 4: audio" in failed["mapping"] and "is a dict" in failed["mapping"]
    assert _written(out) == ["good", "textonly"]


def test_manifest_captions_that_are_not_text_are_bad_rows(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    manifest = _jsonl(tmp_path / "m.jsonl", [
        {"key": "good", "image": "ok.jpg", "caption": "fine"},
        {"key": "several", "image": "ok.jpg", "caption": ["one", "two"]},
        {"key": "number", "image": "ok.jpg", "caption": 5},
        {"key": "mapping", "image": "ok.jpg", "caption": {"x": "y"}},
        {"key": "mixed", "image": "ok.jpg", "caption": ["one", 2]},
    ])
    out = tmp_path / "out"

    prepare_shards(manifest, out, progress=False)

    assert _stats(out)["failures_by_reason"] == {"bad_caption": 3}
    failed = _failed(out)
    assert "m.jsonl row 3: caption 5 is a int" in failed["number"]
    assert "is a dict" in failed["mapping"] and "is a list" in failed["mixed"]
    assert _written(out) == ["good", "several"]


def test_jsonl_labels_empty_null_missing_or_out_of_range_are_bad_labels(tmp_path):
    """A column of class indices (text labels such as "cat": tests/test_shards_labels.py)."""
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    labels = {"one": 1, "text7": "7", "float2": 2.0, "null": None, "empty": "", "missing": ..., "negative": -3,
              "huge": 99999999999999999999, "half": 2.5, "true": True}
    rows = [{"key": k, "image": "ok.jpg", "caption": k, **({} if v is ... else {"label": v})} for k, v in labels.items()]
    out = tmp_path / "out"

    prepare_shards(_jsonl(tmp_path / "m.jsonl", rows), out, progress=False)

    assert _stats(out)["failures_by_reason"] == {"bad_label": 7}
    failed = _failed(out)
    assert "m.jsonl row 4: the label is null" in failed["null"]
    assert "m.jsonl row 5: the label is empty" in failed["empty"]
    assert "m.jsonl row 6: no 'label'" in failed["missing"]
    assert "label -3 is outside" in failed["negative"] and "outside" in failed["huge"]
    assert "is a float" in failed["half"] and "is a bool" in failed["true"]
    samples = {key: sample for tar in sorted(out.glob("*.tar")) for key, sample in read_tar(tar).items()}
    assert {key: sample["cls"] for key, sample in samples.items()} == {"one": b"1", "text7": b"7", "float2": b"2"}


def test_csv_with_a_label_column_counts_an_empty_cell_and_keeps_the_other_rows(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption,label\nok.jpg,first,0\nok.jpg,second,\nok.jpg,third,2\nok.jpg,fourth, 3 \n")
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet") == 0

    stats = _stats(out)
    assert stats["failures_by_reason"] == {"bad_label": 1} and stats["successes"] == 3
    assert "m.csv row 2: the label is empty" in _failed(out)["000000001"]
    samples = read_tar(out / "shard-000000.tar")
    assert {k: s["cls"] for k, s in samples.items()} == {"000000000": b"0", "000000002": b"2", "000000003": b"3"}


# --- audio from files -------------------------------------------------------------------------------------------

def _pair(folder: Path, stem: str, audio_name: str, data: bytes) -> None:
    (folder / audio_name).write_bytes(data)
    (folder / f"{stem}.txt").write_text(f"the {stem} clip")


@needs_proc
def test_an_odd_header_rate_is_resampled_cheaply(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    seconds = 2
    _pair(src, "odd", "odd.wav", _wav(0.1 * np.sin(np.arange(seconds * 48001) / 10), 48001))
    out = tmp_path / "out"

    # A direct torchaudio resample of 48001 -> 16000 Hz builds a kernel of ~768 M floats (gigabytes).
    child = _prepare_within_a_gib(src, "-o", out, "--audio-rate", "16000")

    assert child.returncode == 0, child.stderr[-2000:]
    info = soundfile.info(io.BytesIO(read_tar(out / "shard-000000.tar")["odd"]["flac"]))
    assert info.samplerate == 16000 and abs(info.duration - seconds) < 0.01


def test_audio_max_seconds_decodes_only_that_window(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    rate = 8000
    _pair(src, "long", "long.wav", _wav(np.zeros(10 * 60 * rate), rate))  # ten minutes of silence
    decoded = []
    real_read = soundfile.SoundFile.read

    def counting_read(self, *args, **kwargs):
        frames = real_read(self, *args, **kwargs)
        decoded.append(len(frames))
        return frames

    monkeypatch.setattr(soundfile.SoundFile, "read", counting_read)
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "-o", out, "--audio-max-seconds", "1", "--quiet") == 0

    info = soundfile.info(io.BytesIO(read_tar(out / "shard-000000.tar")["long"]["flac"]))
    assert (info.samplerate, info.frames) == (rate, rate)
    assert decoded and max(decoded) == rate  # one second read, not ten minutes


def test_absurd_or_non_finite_audio_is_counted_and_the_rest_written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _pair(src, "good", "good.wav", _wav(_with(0.5), 16000))
    _pair(src, "fine", "fine.wav", _wav(_with(0.5), 44100, "FLOAT"))
    _pair(src, "onehz", "onehz.wav", _wav(np.zeros(100), 1))
    _pair(src, "gigahz", "gigahz.wav", _wav(np.zeros(100), 10**9))
    _pair(src, "nan", "nan.wav", _wav(_with(np.nan), 16000, "FLOAT"))
    _pair(src, "inf", "inf.wav", _wav(_with(-np.inf), 16000, "FLOAT"))
    _pair(src, "empty", "empty.wav", _wav(np.zeros(0), 16000))
    _pair(src, "ultra", "ultra.wav", _wav(np.zeros(800), 768000))  # a real rate, beyond what FLAC stores
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "-o", out, "--quiet") == 0

    assert _stats(out)["failures_by_reason"] == {"bad_audio": 6}
    failed = _failed(out)
    assert "onehz.wav: sample rate 1 Hz is outside" in failed["onehz"]
    assert "gigahz.wav: sample rate 1000000000 Hz is outside" in failed["gigahz"]
    assert "nan.wav: audio holds NaN or infinite samples" in failed["nan"]
    assert "inf.wav: audio holds NaN or infinite samples" in failed["inf"]
    assert "empty.wav: audio has no samples" in failed["empty"]
    assert "ultra.wav: cannot be stored as FLAC at 768000 Hz" in failed["ultra"] and "--audio-rate" in failed["ultra"]
    assert sorted(_written(out)) == ["fine", "good"]
    # with a rate FLAC can store, the ultrasound recording is kept
    assert run_cli("shards", "prepare", src, "-o", tmp_path / "resampled", "--audio-rate", "16000", "--quiet") == 0
    assert sorted(_written(tmp_path / "resampled")) == ["fine", "good", "ultra"]


# --- images and sidecars from files -----------------------------------------------------------------------------

def test_media_that_is_not_what_its_extension_says_or_empty_is_counted(tmp_path):
    src = make_pairs(tmp_path / "src", 2)
    _pair(src, "textjpg", "textjpg.jpg", b"just some text, not a JPEG")
    _pair(src, "zerojpg", "zerojpg.jpg", b"")
    _pair(src, "zerowav", "zerowav.wav", b"")
    _pair(src, "textflac", "textflac.flac", b"fLaC but not really")
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "-o", out, "--quiet") == 0

    assert _stats(out)["failures_by_reason"] == {"bad_audio": 2, "bad_image": 2}
    failed = _failed(out)
    for key, name in {"textjpg": "textjpg.jpg", "zerojpg": "zerojpg.jpg", "zerowav": "zerowav.wav", "textflac": "textflac.flac"}.items():
        assert f"{name}: " in failed[key]
    assert _written(out) == ["img000", "img001"]


def _strip(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 10, 10)).save(out, format="PNG")
    return out.getvalue()


@needs_proc
@pytest.mark.parametrize("mode, stored", [("center_crop", (256, 256)), ("keep_ratio_largest", (1, 256)), ("none", (1, 100_000))])
def test_a_one_pixel_strip_is_resized_within_memory(tmp_path, mode, stored):
    src = make_pairs(tmp_path / "src", 1)
    (src / "strip.png").write_bytes(_strip(1, 100_000))
    (src / "strip.txt").write_text("a very thin image")
    out = tmp_path / "out"

    child = _prepare_within_a_gib(src, "-o", out, "--resize-mode", mode, "--image-format", "png")

    assert child.returncode == 0, child.stderr[-2000:]
    assert Image.open(io.BytesIO(read_tar(out / "shard-000000.tar")["strip"]["png"])).size == stored


@needs_proc
def test_a_strip_whose_resized_size_is_a_bomb_is_counted_not_allocated(tmp_path):
    src = make_pairs(tmp_path / "src", 1)
    (src / "strip.png").write_bytes(_strip(100_000, 1))
    (src / "strip.txt").write_text("a very wide image")
    out = tmp_path / "out"

    # keep_ratio scales the short side to 256: 25,600,000 x 256 pixels, gigabytes before any check in Pillow.
    child = _prepare_within_a_gib(src, "-o", out, "--resize-mode", "keep_ratio")

    assert child.returncode == 0, child.stderr[-2000:]
    assert _stats(out)["failures_by_reason"] == {"too_many_pixels": 1}
    assert "strip.png: 100000x1 would be resized to 25600000x256" in _failed(out)["strip"]
    assert _written(out) == ["img000"]


def test_sidecar_json_text_of_the_wrong_shape_is_bad_json(tmp_path):
    src = make_pairs(tmp_path / "src", 1)
    for stem, meta in {"several": {"text": ["one", "two"], "site": "x"}, "number": {"text": 5},
                       "mapping": {"text": {"x": "y"}}, "nothing": {"text": []}, "array": [1, 2]}.items():
        (src / f"{stem}.jpg").write_bytes(image_bytes())
        (src / f"{stem}.json").write_text(json.dumps(meta))
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "-o", out, "--quiet") == 0

    assert _stats(out)["failures_by_reason"] == {"bad_json": 4}
    failed = _failed(out)
    assert "number.json: json 'text' is a int" in failed["number"]
    assert "mapping.json: json 'text' is a dict" in failed["mapping"]
    assert "nothing.json: json 'text' is an empty list" in failed["nothing"]
    assert "array.json: json is a list" in failed["array"]
    several = read_tar(out / "shard-000000.tar")["several"]
    assert json.loads(several["json"]) == {"site": "x", "text": ["one", "two"]}
    assert verify(out)["ok"]
