"""A hostile shard set: good samples mixed with every kind of bad one that scraped data holds.

Each bad sample is listed with the words its failure must be counted or named under, so every stage that reads
samples (verify, the training loader, every evaluation task) can be checked for what it keeps (every good sample)
and what it counts (every bad one). The bytes are written independently of mmcl, with webdataset, soundfile and
Pillow, and patched by hand where those refuse to write something broken.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import webdataset as wds
from PIL import Image

CLASSES = ["red square", "green circle", "blue triangle"]


def jpeg(seed: int, size=(40, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def png(width: int, height: int) -> bytes:
    """A flat PNG: even 100 megapixels compress to a few hundred kB, which is what a decompression bomb is."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG")
    return buf.getvalue()


def wav(samples: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def flac(seconds: float, rate: int = 16000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, (0.3 * np.sin(2 * np.pi * hz * t)).astype("float32"), rate, format="FLAC")
    return buf.getvalue()


def silent_flac(seconds: float, rate: int = 16000) -> bytes:
    """Long silence costs FLAC almost nothing on disk but `seconds x rate` floats when decoded in full."""
    buf = io.BytesIO()
    with soundfile.SoundFile(buf, "w", rate, 1, format="FLAC") as f:
        block = np.zeros(rate * 60, dtype="float32")
        for _ in range(int(seconds // 60)):
            f.write(block)
    return buf.getvalue()


def with_rate(wav_bytes: bytes, rate: int) -> bytes:
    """A WAV whose header claims `rate` Hz (the fmt chunk's rate and byte-rate fields), frames unchanged."""
    data = bytearray(wav_bytes)
    fmt = data.index(b"fmt ")
    block_align = struct.unpack_from("<H", data, fmt + 20)[0]
    struct.pack_into("<II", data, fmt + 12, rate, (rate * block_align) & 0xFFFFFFFF)
    return bytes(data)


@dataclass
class Corpus:
    shards: list[Path]
    good: set[str]  # keys that every stage must keep
    bad: dict[str, str] = field(default_factory=dict)  # key -> words its failure is named by
    broken_shards: dict[str, str] = field(default_factory=dict)  # shard name -> what is wrong with it
    with_audio: set[str] = field(default_factory=set)  # good keys that carry audio
    with_label: set[str] = field(default_factory=set)  # good keys that carry a label


def _good(i: int, **extra) -> dict:
    return {"__key__": f"good{i:03d}", "jpg": jpeg(i), "txt": f"a photo of a {CLASSES[i % 3]}",
            "cls": str(i % 3).encode(), **extra}


def hostile_samples(num_good: int = 24, long_audio_seconds: float = 600) -> tuple[list[dict], dict[str, str]]:
    """(samples in order, {bad key: failure words}); good samples keep their `good` key prefix."""
    bad: list[tuple[dict, str]] = [
        ({"jpg": jpeg(1), "json": b"[1, 2]"}, "json is a list"),
        ({"jpg": jpeg(2), "json": b'{"text": 5}'}, "json 'text' is a int"),
        ({"jpg": jpeg(3), "json": b'{"text": {"x": "y"}}'}, "json 'text' is a dict"),
        ({"jpg": jpeg(4), "json": b'{"text": []}'}, "empty list"),
        ({"jpg": jpeg(5), "json": b"{not json"}, "bad text"),
        ({"jpg": jpeg(6), "txt": b"\xff\xfe not utf-8"}, "bad text"),
        ({"jpg": jpeg(7), "txt": b"a caption", "cls": b"99999999999999999999"}, "outside 0.."),
        ({"jpg": jpeg(8), "txt": b"a caption", "cls": b"-3"}, "outside 0.."),
        ({"jpg": jpeg(9), "txt": b"a caption", "cls": b"three"}, "not an integer"),
        ({"jpg": jpeg(10), "txt": b"a caption", "flac": wav(np.array([0.1, np.nan, 0.2] * 4000, "float32"))},
         "NaN or infinite"),
        ({"jpg": jpeg(11), "txt": b"a caption", "flac": wav(np.array([0.1, np.inf] * 6000, "float32"))},
         "NaN or infinite"),
        ({"jpg": jpeg(12), "txt": b"a caption", "flac": wav(np.zeros(0, "float32"))}, "undecodable audio"),
        ({"jpg": jpeg(13), "txt": b"a caption", "flac": with_rate(wav(np.zeros(8000, "float32")), 1)}, "1 Hz"),
        ({"jpg": jpeg(14), "txt": b"a caption", "flac": with_rate(wav(np.zeros(8000, "float32")), 10**9)},
         "1000000000 Hz"),
        ({"jpg": jpeg(15)[:200], "txt": b"a caption"}, "undecodable image"),  # truncated member
        ({"jpg": b"", "txt": b"a caption"}, "undecodable image"),  # zero bytes
        ({"jpg": b"this is text, not a JPEG", "txt": b"a caption"}, "undecodable image"),  # not what it says
        ({"png": png(1, 100_000), "txt": b"a caption"}, "max_aspect_ratio"),
        ({"png": png(12_000, 8_000), "txt": b"a caption"}, "max_pixels"),  # 96 MP, past Pillow's 89.5 MP
        ({"jpg": jpeg(16), "txt": b"   "}, "empty caption"),
    ]
    good = [
        _good(0, flac=flac(1.0)),
        _good(1, flac=wav(np.zeros(16001, "float32"), rate=48001)),  # an odd rate is resampled, cheaply
        _good(2, flac=silent_flac(long_audio_seconds)),  # only the window used is read
        _good(3, txt=("a very long caption " * 50_000).encode()),  # 1 MB of text
        {**{k: v for k, v in _good(4).items() if k != "txt"}, "json": json.dumps({"text": ["one", "two"]}).encode()},
        *[_good(i) for i in range(5, num_good)],
    ]
    samples, words = [], {}
    for i, (sample, expected) in enumerate(bad):
        key = f"bad{i:03d}"
        samples.append({"__key__": key, **sample})
        words[key] = expected
    # Interleave, so that bad samples fall in every shard and every loader worker.
    mixed = []
    for i in range(max(len(good), len(samples))):
        mixed += good[i:i + 1] + samples[i:i + 1]
    return mixed, words


def write_corpus(folder: Path, num_good: int = 24, per_shard: int = 12, long_audio_seconds: float = 600,
                 include_bad: bool = True) -> Corpus:
    """Shards of the hostile samples plus a tar cut mid-member and a file that is not a tar at all; without
    `include_bad`, the same good samples alone (the clean baseline).

    The first shard repeats its first key at its end. The cut shard's first sample is whole and good; its second
    is cut. Class names go to classnames.txt.
    """
    folder.mkdir(parents=True, exist_ok=True)
    samples, bad = hostile_samples(num_good, long_audio_seconds)
    if not include_bad:
        samples = [s for s in samples if s["__key__"].startswith("good")]
        bad = {}
    shards = []
    for start in range(0, len(samples), per_shard):
        path = folder / f"shard-{start // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for sample in samples[start:start + per_shard]:
                writer.write(sample)
            if start == 0 and include_bad:  # a key repeated later in the same shard: the repeat is the bad one
                writer.write({**samples[0], "txt": b"the same key again"})
        shards.append(path)
    (folder / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    if not include_bad:
        good = {s["__key__"] for s in samples}
        return Corpus(shards, good, with_audio={s["__key__"] for s in samples if "flac" in s}, with_label=good)
    cut = folder / f"shard-{len(shards):06d}.tar"
    whole = {"__key__": "goodcut", "jpg": jpeg(99), "txt": b"a photo of a red square", "cls": b"0"}
    with wds.TarWriter(str(cut)) as writer:
        writer.write(whole)
        writer.write({"__key__": "badcut", "jpg": jpeg(98), "txt": b"lost"})
    with tarfile.open(cut) as tar:
        last = tar.getmember("badcut.jpg")
    cut.write_bytes(cut.read_bytes()[:last.offset_data + last.size // 2])  # cut in the middle of badcut.jpg
    shards.append(cut)
    not_tar = folder / f"shard-{len(shards):06d}.tar"
    not_tar.write_bytes(b"<html>403 Forbidden</html>" * 40)
    shards.append(not_tar)
    good = {s["__key__"] for s in samples if s["__key__"].startswith("good")} | {"goodcut"}
    return Corpus(shards, good, bad, {cut.name: "cut mid-member", not_tar.name: "not a tar"},
                  with_audio={s["__key__"] for s in samples if s["__key__"].startswith("good") and "flac" in s},
                  with_label=good)


MEDIA = ("jpg", "png", "flac")


def write_files(folder: Path, samples: list[dict]) -> Path:
    """Each sample as files KEY.EXT (labels are not files in this layout), and a JSONL manifest of them."""
    folder.mkdir(parents=True)
    rows = []
    for sample in samples:
        sample = {k: v.encode() if isinstance(v, str) and k != "__key__" else v for k, v in sample.items()}
        key = sample["__key__"]
        row = {"key": key}
        for ext, data in sample.items():
            if ext in MEDIA + ("txt", "json"):
                (folder / f"{key}.{ext}").write_bytes(data)
            if ext in MEDIA:
                row["audio" if ext == "flac" else "image"] = f"{key}.{ext}"
        if "txt" in sample:
            row["caption"] = sample["txt"].decode("utf-8", "replace")
        elif "json" in sample:
            with contextlib.suppress(ValueError):
                meta = json.loads(sample["json"])
                row["caption"] = meta.get("text") if isinstance(meta, dict) else meta
        # Every row carries a label (a labelled manifest needs one per row), so the other faults show.
        text = sample.get("cls", b"0").decode()
        row["label"] = int(text) if text.lstrip("-").isdigit() else text
        rows.append(row)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
