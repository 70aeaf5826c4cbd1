"""Class labels (`cls` entries): a class index, 0 ≤ label < MAX_LABEL, or a label list of them.

A label list is written in a `cls` entry as class indices separated by commas and/or spaces, optionally in
brackets, so JSON works too: `3,7`, `3 7`, `[3, 7]`; `[]` (or a lone `,`) is the empty list. In CSV/TSV manifests
its entries are separated by `;` (LIST_SEPARATOR), a lone `;` being the empty list.
"""

from __future__ import annotations

import re

# Far above any real class count, and safely inside int64 (a larger value would crash batching).
MAX_LABEL = 2**31
LIST_SEPARATOR = ";"  # between the entries of a CSV/TSV manifest's label list
_CLS_SPLIT = re.compile(r"[,\s]+")


def _text(data: bytes | str) -> str:
    return (data.decode("utf-8") if isinstance(data, bytes) else data).strip()


def parse_label(data: bytes | str) -> int:
    """The class index in a `cls` entry; ValueError naming what is wrong for anything else."""
    text = _text(data)
    try:
        label = int(text)
    except ValueError:
        raise ValueError(f"label {text[:40]!r} is not an integer") from None
    if not 0 <= label < MAX_LABEL:
        raise ValueError(f"label {text[:40]} is outside 0..{MAX_LABEL - 1} (labels are class indices)")
    return label


def parse_labels(data: bytes | str) -> int | tuple[int, ...]:
    """A `cls` entry: one class index, or a tuple of them for a label list; ValueError if malformed."""
    text = _text(data)
    bracketed = text.startswith("[") and text.endswith("]")
    body = text[1:-1].strip() if bracketed else text
    if not bracketed and not _CLS_SPLIT.search(body):
        return parse_label(body)
    return tuple(parse_label(entry) for entry in _CLS_SPLIT.split(body) if entry)


def format_labels(labels: int | tuple[int, ...]) -> str:
    """A `cls` entry for parse_labels: a list always in brackets (`[3, 7]`, `[]`), so that a list of one class is
    never read back as a plain label."""
    return str(labels) if isinstance(labels, int) else "[" + ", ".join(map(str, labels)) + "]"


def split_list(text: str) -> tuple[str, ...] | None:
    """A CSV/TSV cell's label list entries (stripped, not yet checked), () for a lone separator; None when the
    cell is no list. ValueError for an empty entry (a lone separator aside), which reads as a slip."""
    if LIST_SEPARATOR not in text:
        return None
    entries = tuple(entry.strip() for entry in text.split(LIST_SEPARATOR))
    if not any(entries):
        return ()
    if not all(entries):
        raise ValueError(f"label list {text[:60]!r} has an empty entry (entries are separated by a single "
                         f"{LIST_SEPARATOR!r}; a lone {LIST_SEPARATOR!r} is the empty list)")
    return entries
