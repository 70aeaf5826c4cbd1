"""Image decoding: bytes to an RGB PIL image; the tower's transform does the rest."""

from __future__ import annotations

import io

import torch
from PIL import Image

EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        if img.mode == "P" and "transparency" in img.info:
            # The same RGB pixels as converting directly, which makes PIL warn once per worker and epoch.
            img = img.convert("RGBA")
        return img.convert("RGB")  # forces the full decode here, so corrupt bytes fail in decode()


def load(data: bytes, transform) -> torch.Tensor:
    return transform(decode(data))


def placeholder(transform) -> torch.Tensor:
    """Zeros shaped like a transformed image, standing in for samples that lack one."""
    return torch.zeros_like(transform(Image.new("RGB", (256, 256))))
