"""Tiny on-disk inputs and a CLI harness shared by the tests/test_shards_*.py files."""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from data_tools.cli import register
from mmcl.errors import UserError


def run_cli(*argv: str) -> int:
    """Parse and run like the `mmcl` entry point: register() fills in the `shards` parser."""
    parser = argparse.ArgumentParser(prog="mmcl")
    register(parser.add_subparsers(dest="command", required=True).add_parser("shards"))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def image_bytes(size=(32, 24), color=(200, 30, 30), fmt="JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def flac_bytes(seconds=0.25, rate=16000, channels=2, fmt="FLAC") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels, axis=1).astype("float32")
    out = io.BytesIO()
    soundfile.write(out, wave, rate, format=fmt)
    return out.getvalue()


def make_pairs(root: Path, n: int, *, size=(32, 24)) -> Path:
    """NAME.jpg + NAME.txt pairs with distinct pixels and captions."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"img{i:03d}.jpg").write_bytes(image_bytes(size, (i * 7 % 256, i * 13 % 256, 90)))
        (root / f"img{i:03d}.txt").write_text(f"caption number {i}\n", encoding="utf-8")
    return root


def read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    """key -> {extension: bytes}, in the order stored."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


__all__ = ["UserError", "run_cli", "image_bytes", "flac_bytes", "make_pairs", "read_tar"]
