"""Text: captions from `txt` (one) or `json` with a `text` field (one or many); optional caption augmentation.

Augmentation follows the random word deletion and swap of EDA, as studied for CLIP training in "Improved
baselines for vision-language pre-training" (Fini et al., 2023). Tokenising is the text tower's job.
"""

from __future__ import annotations

import json
import random

from pydantic import Field

from mmcl.config import Section


class TextAugmentConfig(Section):
    """Random edits of the training caption (evaluation never augments)."""

    word_drop: float = Field(0.0, description="Probability that each word is deleted (one word always stays).",
                             ge=0, lt=1)
    word_swap: float = Field(0.0, description="Random word-pair swaps, as a fraction of the caption's words.",
                             ge=0, le=1)

    @property
    def enabled(self) -> bool:
        return bool(self.word_drop or self.word_swap)


# Longer captions are cut here: every tokenizer keeps only its first context-length tokens (a few thousand
# characters at most), and a megabyte of text would otherwise cost seconds and memory in a loader worker.
MAX_CAPTION_CHARS = 20_000


def captions_from_json(meta) -> list[str] | None:
    """The captions in a decoded `json` entry: its `text` field, a string or a list of strings; None if absent.

    Raises ValueError naming what is wrong for any other shape, so a malformed entry is a counted sample
    failure rather than a crash or a silently invented caption.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"json is a {type(meta).__name__}, expected an object with a 'text' field")
    value = meta.get("text")
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"json 'text' is a {type(value).__name__}, expected a string or a list of strings")
    if not value:
        raise ValueError("json 'text' is an empty list")
    wrong = next((v for v in value if not isinstance(v, str)), None)
    if wrong is not None:
        raise ValueError(f"json 'text' list holds a {type(wrong).__name__} ({str(wrong)[:40]!r}), expected strings")
    return value


def decode_captions(sample: dict) -> list[str] | None:
    """All captions of a raw sample, or None if it has no text. Raises ValueError on bad bytes or shapes."""
    if "txt" in sample:
        captions = [sample["txt"].decode("utf-8")]
    elif "json" in sample:
        captions = captions_from_json(json.loads(sample["json"].decode("utf-8")))
        if captions is None:
            return None
    else:
        return None
    captions = [c.strip()[:MAX_CAPTION_CHARS] for c in captions if c.strip()]
    if not captions:
        raise ValueError("empty caption")
    return captions


def choose_caption(captions: list[str], rng: random.Random | None) -> str:
    """One caption: a random one in training (rng given), the first in evaluation."""
    return rng.choice(captions) if rng is not None else captions[0]


def augment(caption: str, cfg: TextAugmentConfig, rng: random.Random) -> str:
    """Drop each word with probability `word_drop`, then swap `word_swap` x words random pairs."""
    words = caption.split()
    if cfg.word_drop:
        kept = [w for w in words if rng.random() >= cfg.word_drop]
        words = kept or [rng.choice(words)]
    for _ in range(round(cfg.word_swap * len(words))):
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    return " ".join(words)
