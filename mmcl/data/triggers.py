"""Backdoor triggers: what `mmcl shards poison` plants in training data and the `backdoor` evaluation task applies.

One pattern serves a whole data set, drawn from the seed, as an attacker would reuse it:
  patch         a BadNets-style square of random colours, `patch_size` pixels, at a random or a fixed place;
  blended       the image mixed with a fixed smooth colour pattern: (1 - alpha) x image + alpha x pattern;
  random_noise  fixed uniform noise in [-1, 1] x alpha x 255 added to every pixel (clipped).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

TRIGGERS = ("patch", "blended", "random_noise")


@dataclass
class TriggerSpec:
    kind: str = "patch"
    patch_size: int = 16
    position: tuple[int, int] | None = None  # top-left corner; None: random per sample
    alpha: float = 0.2
    seed: int = 0
    tone_hz: float = 1000.0
    tone_seconds: float = 0.25
    tone_amplitude: float = 0.3


def pattern(spec: TriggerSpec, size: tuple[int, int]) -> np.ndarray:
    """The trigger's pixels for an image of `size` (w, h): the patch itself, or a full-size pattern [h, w, 3]."""
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "patch":
        return rng.integers(0, 256, (spec.patch_size, spec.patch_size, 3), dtype=np.uint8)
    w, h = size
    if spec.kind == "blended":
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        phase = rng.uniform(0, 2 * math.pi, 3)
        return np.stack([127.5 + 127.5 * np.sin(12 * (x + y) + p) for p in phase], axis=-1)
    return rng.uniform(-1, 1, (h, w, 3))


def apply_image_trigger(image: Image.Image, spec: TriggerSpec, rng: random.Random) -> tuple[Image.Image, list | None]:
    """The triggered RGB image, and the patch's top-left corner (None for whole-image triggers)."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float64)
    h, w = pixels.shape[:2]
    if spec.kind == "patch":
        s = spec.patch_size
        if s > min(h, w):
            raise ValueError(f"{w}x{h} image is smaller than the {s}-pixel patch")
        x, y = spec.position if spec.position is not None else (rng.randint(0, w - s), rng.randint(0, h - s))
        if x + s > w or y + s > h:
            raise ValueError(f"patch at ({x}, {y}) does not fit a {w}x{h} image")
        pixels[y:y + s, x:x + s] = pattern(spec, (w, h))
        corner = [x, y]
    elif spec.kind == "blended":
        pixels = (1 - spec.alpha) * pixels + spec.alpha * pattern(spec, (w, h))
        corner = None
    else:
        pixels = pixels + spec.alpha * 255 * pattern(spec, (w, h))
        corner = None
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), corner
