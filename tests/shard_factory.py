"""Tiny WebDataset shards written directly with webdataset's TarWriter, independent of data_tools."""

from __future__ import annotations

import io
from pathlib import Path

import webdataset as wds
from PIL import Image


def jpeg_bytes(colour=(200, 30, 30), size=40) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG")
    return buf.getvalue()


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


def image_text_samples(n: int, prefix: str = "s") -> list[dict]:
    return [
        {"__key__": f"{prefix}{i:05d}", "jpg": jpeg_bytes((i % 256, 50, 100)), "txt": f"caption {i}"}
        for i in range(n)
    ]
