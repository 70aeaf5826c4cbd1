"""Per-sample content fingerprints, stored in the shards' parquet manifest so that finding the evaluation samples a
training set also holds compares hashes, never images.

``sha256`` of a source file catches exact copies. ``image_phash`` (a perceptual hash: the signs of the 63 lowest
non-constant DCT frequencies of the image shrunk to 32x32 grey levels, against their median) changes in a few of its
bits at most when a picture is re-encoded, resized or converted, where unrelated pictures differ in many. Being
grey, it cannot tell a red square from a green one in the same place: ``image_colours`` (the picture shrunk to 4x4
RGB) must then agree too.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageOps

# Two pictures whose hashes differ in at most this many bits are taken for copies. Measured on 1,000 small
# synthetic pictures (plain backgrounds with a few shapes, a hard case): 97% of re-encoded, resized or converted
# copies were within 4 bits, no two of 1.1 million distinct pairs were (the closest 8 apart).
PHASH_DISTANCE = 4
# ... and their 4x4 colour thumbnails differ by at most this much on average (0-255 levels): re-encoding and
# resizing move block means by a few levels, a shape of another colour in the same place by tens.
COLOUR_DISTANCE = 10.0
_COLOUR_SIDE = 4
_SIDE = 32
_DCT = np.cos(np.pi * (2 * np.arange(_SIDE)[None, :] + 1) * np.arange(_SIDE)[:, None] / (2 * _SIDE))
# Below this range of grey levels the picture is flat (a plain colour, a blank page): its frequencies are
# rounding noise, and all flat pictures would look alike, so it gets no perceptual hash.
_MIN_CONTRAST = 8


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_phash(img: Image.Image) -> int | None:
    """The perceptual hash as a non-negative int below 2**63 (it fits parquet's int64), or None for a flat image
    or one Pillow cannot turn grey."""
    try:
        # The EXIF orientation is applied to the small copy, so a rotated re-encode of a phone photo matches.
        small = ImageOps.exif_transpose(_upright(img).convert("L").resize((_SIDE, _SIDE), Image.Resampling.BOX))
    except ValueError:  # a mode Pillow cannot convert (LAB, La): its bytes hash still counts
        return None
    grey = np.asarray(small, dtype=np.float64)
    if grey.max() - grey.min() < _MIN_CONTRAST:
        return None
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()[1:]  # without the constant term, which is only brightness
    bits = 0
    for above in low > np.median(low):
        bits = bits << 1 | int(above)
    return bits


def _upright(img: Image.Image) -> Image.Image:
    if img.mode == "P":  # Pillow warns when a palette with transparency goes straight to another mode
        img = img.convert("RGBA")
    return img


def image_colours(img: Image.Image) -> bytes | None:
    """The picture shrunk to 4x4 RGB, 48 bytes (row-major), or None for a mode Pillow cannot convert."""
    try:
        small = ImageOps.exif_transpose(_upright(img).convert("RGB").resize((_COLOUR_SIDE, _COLOUR_SIDE),
                                                                           Image.Resampling.BOX))
    except ValueError:
        return None
    return small.tobytes()


def colour_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two `image_colours` thumbnails, in 0-255 levels."""
    return float(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8)).mean())
