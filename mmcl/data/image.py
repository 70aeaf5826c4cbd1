"""Image decoding: bytes to an RGB PIL image within size limits; the tower's transform does the rest."""

from __future__ import annotations

import io
import math
import warnings

import torch
from PIL import Image
from torchvision.transforms import Compose, RandomResizedCrop, Resize

from mmcl.data.config import MAX_PIXELS, ImageLimits  # noqa: F401  (re-exported: defined with the data config)

EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def short_side_needed(transform) -> int | None:
    """The short side an image needs so that the transform's first step, its crop or resize to the tower's input,
    never upsamples; None for a transform not recognised here (such images are decoded in full)."""
    first = transform.transforms[0] if isinstance(transform, Compose) and transform.transforms else None
    if isinstance(first, RandomResizedCrop):
        # A crop covers at least scale[0] of the image's area at an aspect ratio of at most r either way, so its
        # sides are at least short * sqrt(scale[0] / r); each is resized to size. A short side that keeps this >=
        # size means every crop is still only downsampled, as from the full image, which is at least twice as large.
        r = max(first.ratio[1], 1 / first.ratio[0])
        return math.ceil(max(first.size) * math.sqrt(r / first.scale[0]))
    if isinstance(first, Resize):
        # Resize(n) scales the short side to n, Resize((h, w)) to h x w: a short side >= the largest covers both.
        return max(first.size) if isinstance(first.size, (list, tuple)) else first.size
    return None


def decode(data: bytes, limits: ImageLimits, short_side: int | None = None) -> Image.Image:
    """`short_side`: a JPEG at least twice that on its short side is decoded at 1/2, 1/4 or 1/8 scale, the smallest
    that keeps its short side >= `short_side`; other formats, and smaller JPEGs, in full."""
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
        if short_side and min(width, height) >= 2 * short_side:
            img.draft("RGB", (short_side, short_side))  # a no-op for formats other than JPEG
        return img.convert("RGB")  # decodes here (in full or reduced), so corrupt bytes fail in decode()


def load(data: bytes, transform, limits: ImageLimits) -> torch.Tensor:
    return load_each(data, [transform], limits)[0]


def load_each(data: bytes, transforms: list, limits: ImageLimits) -> list[torch.Tensor]:
    """The picture decoded once and put through each transform (a sample and its second view). Draft decoding
    goes by the first transform; the others must start with the same crop or resize (mmcl.data.views keeps it)."""
    picture = decode(data, limits, short_side_needed(transforms[0]) if limits.jpeg_draft else None)
    return [transform(picture) for transform in transforms]


def placeholder(transform) -> torch.Tensor:
    """Zeros shaped like a transformed image, standing in for samples that lack one."""
    return torch.zeros_like(transform(Image.new("RGB", (256, 256))))
