"""Text decoding: captions from `txt` (one) or `json` with a `text` field (one or many)."""

from __future__ import annotations

import json
import random


def decode_captions(sample: dict) -> list[str] | None:
    """All captions of a raw sample, or None if it has no text. Raises ValueError on bad bytes."""
    if "txt" in sample:
        captions = [sample["txt"].decode("utf-8")]
    elif "json" in sample:
        text = json.loads(sample["json"].decode("utf-8")).get("text")
        if text is None:
            return None
        captions = [text] if isinstance(text, str) else list(text)
    else:
        return None
    captions = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
    if not captions:
        raise ValueError("empty caption")
    return captions


def choose_caption(captions: list[str], rng: random.Random | None) -> str:
    """One caption: a random one in training (rng given), the first in evaluation."""
    return rng.choice(captions) if rng is not None else captions[0]
