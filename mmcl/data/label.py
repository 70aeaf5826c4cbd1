"""Class labels (`cls` entries): a class index, 0 ≤ label < MAX_LABEL."""

from __future__ import annotations

# Far above any real class count, and safely inside int64 (a larger value would crash batching).
MAX_LABEL = 2**31


def parse_label(data: bytes | str) -> int:
    """The class index in a `cls` entry; ValueError naming what is wrong for anything else."""
    text = (data.decode("utf-8") if isinstance(data, bytes) else data).strip()
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"label {text[:40]!r} is not an integer") from None
    if not 0 <= label < MAX_LABEL:
        raise ValueError(f"label {text[:40]} is outside 0..{MAX_LABEL - 1} (labels are class indices)")
    return label
