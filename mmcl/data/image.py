"""Image decoding: bytes to an RGB PIL image within size limits; the tower's transform does the rest."""

from __future__ import annotations

import io
import warnings

import torch
from PIL import Image
from pydantic import Field

from mmcl.config import Section

EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# Pillow's own decompression-bomb warning threshold (~89.5 MP); `mmcl shards prepare --max-pixels` defaults to it too.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS


class ImageLimits(Section):
    """Images refused from their header alone, before any pixel is decoded (counted as sample failures)."""

    max_pixels: int = Field(MAX_PIXELS, gt=0, description="Largest width x height decoded; larger images are "
                            "skipped (default: Pillow's decompression-bomb threshold, as `shards prepare --max-pixels`).")
    max_aspect_ratio: float = Field(100.0, ge=1, description="Largest long side / short side: a 1x100000 strip "
                                    "would become gigabytes once a transform scales its short side to the tower's "
                                    "input size.")


def decode(data: bytes, limits: ImageLimits) -> Image.Image:
    with warnings.catch_warnings():  # Pillow's bomb warning: the limits below decide, and count what they refuse
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
    with img:
        width, height = img.size
        if width * height > limits.max_pixels:
            raise ValueError(f"{width}x{height} exceeds max_pixels={limits.max_pixels}")
        if max(width, height) > limits.max_aspect_ratio * min(width, height):
            raise ValueError(f"{width}x{height} exceeds max_aspect_ratio={limits.max_aspect_ratio:g}")
        if img.mode == "P" and "transparency" in img.info:
            # The same RGB pixels as converting directly, which makes PIL warn once per worker and epoch.
            img = img.convert("RGBA")
        return img.convert("RGB")  # forces the full decode here, so corrupt bytes fail in decode()


def load(data: bytes, transform, limits: ImageLimits) -> torch.Tensor:
    return transform(decode(data, limits))


def placeholder(transform) -> torch.Tensor:
    """Zeros shaped like a transformed image, standing in for samples that lack one."""
    return torch.zeros_like(transform(Image.new("RGB", (256, 256))))
