"""Tiny WebDataset shards (written with webdataset's TarWriter, independent of data_tools) and the
transforms and tokenizer the data tests feed them through (open_clip's, as the model factory builds them)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile
import webdataset as wds
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from PIL import Image


def jpeg_bytes(colour=(200, 30, 30), size=40, noise_seed: int | None = None) -> bytes:
    """A plain JPEG, or with `noise_seed` a noisy one, so that different random crops give different tensors."""
    if noise_seed is None:
        img = Image.new("RGB", (size, size), colour)
    else:
        pixels = np.random.default_rng(noise_seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def audio_bytes(samples: np.ndarray, rate: int, format: str = "FLAC") -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format=format)
    return buf.getvalue()


def tone(seconds: float = 0.3, rate: int = 16000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return audio_bytes((0.3 * np.sin(2 * np.pi * hz * t)).astype("float32"), rate)


def write_shards(folder: Path, samples: list[dict], per_shard: int) -> list[Path]:
    """Write `samples` (dicts with __key__ and extension entries) into shards of `per_shard` samples."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(samples), per_shard):
        path = folder / f"shard-{start // per_shard:06d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for sample in samples[start:start + per_shard]:
                writer.write(sample)
        paths.append(path)
    return paths


def image_text_samples(n: int, prefix: str = "s", noisy: bool = False) -> list[dict]:
    return [
        {"__key__": f"{prefix}{i:05d}", "jpg": jpeg_bytes((i % 256, 50, 100), noise_seed=i if noisy else None),
         "txt": f"caption {i}"}
        for i in range(n)
    ]


def image_transforms(size: int = 32) -> dict[str, dict]:
    """open_clip's train (random resized crop) and eval (resize + centre crop) image transforms."""
    return {"train": {"image": image_transform(size, is_train=True)},
            "eval": {"image": image_transform(size, is_train=False)}}


def tokenizer(context_length: int = 16) -> SimpleTokenizer:
    return SimpleTokenizer(context_length=context_length)
