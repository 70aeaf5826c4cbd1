"""Multi-label data: items carrying a list of classes, read from shards and manifests, and the [N, C] target matrix.

How a list is written (the shard and CSV/TSV syntax is mmcl.data.label's, shared with `mmcl shards prepare`):
- shards: a `cls` entry of several class indices separated by commas and/or spaces, optionally in brackets, so
  JSON works too: `3,7`, `3 7`, `[3, 7]`; `[]` (or a lone `,`) is the empty list. A single index is a plain label.
- JSON Lines manifests: `"label": [3, "dog"]`, class indices and/or class names; `[]` is the empty list.
- CSV/TSV manifests: indices and/or names separated by `;` (SEPARATOR): `dog;cat`, `3;7`; a lone `;` is the empty
  list (an empty cell stays an error: it reads as a forgotten label).

An item with an empty list has no positive class: it still counts, as a negative for every class. A task is
multi-label when its data carries any label list (`multilabel: auto`), or when told so (`true`, which also reads
plain labels as one-class lists); in multi-label data a plain label is the list of its one class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mmcl.data.label import LIST_SEPARATOR as SEPARATOR, parse_label, split_list
from mmcl.errors import UserError

if TYPE_CHECKING:
    from mmcl.eval.embed import Embedded

LIST_HINT = f"a label list is a JSON list in JSON Lines, or {SEPARATOR!r}-separated in CSV/TSV"


def manifest_list(value, path: Path, number: int) -> tuple[int | str, ...] | None:
    """The entries of a manifest row's label list (class indices, or class names resolved later); None when the
    label is not a list. A UserError naming the row for a malformed list."""
    if isinstance(value, list):
        return tuple(_entry(entry, value, path, number) for entry in value)
    if path.suffix == ".jsonl" or not isinstance(value, str):
        return None
    try:
        entries = split_list(value)
    except ValueError as err:
        raise UserError(f"{path} row {number}: {err}") from None
    return None if entries is None else tuple(_entry(entry, value, path, number) for entry in entries)


def _entry(entry, value, path: Path, number: int) -> int | str:
    """One list entry: a class index (an integer or its text) or a class name."""
    if isinstance(entry, bool) or not isinstance(entry, (int, str)) or (isinstance(entry, str) and not entry.strip()):
        raise UserError(f"{path} row {number}: label list {str(value)[:60]!r} holds {entry!r}, expected class "
                        "indices or class names")
    text = str(entry).strip()
    try:
        int(text)
    except ValueError:
        return text
    try:
        return parse_label(text)
    except ValueError as err:
        raise UserError(f"{path} row {number}: in label list {str(value)[:60]!r}: {err}") from None


def first_listed(data: Embedded) -> str | None:
    """The key of the first item whose label is a list; None when no item's is."""
    return next((key for key, labels in zip(data.keys, data.label_lists) if labels is not None), None)


def is_multilabel(data: Embedded, mode: bool | str, where: str) -> bool:
    """Whether a task scores its data as multi-label: `mode` true, or auto and some item carries a label list.
    `multilabel: false` on data with label lists is an error: silently dropping those items would change the
    task."""
    listed = first_listed(data)
    if mode is False and listed is not None:
        raise UserError(f"{where}: multilabel is false but item {listed!r} carries a label list; set multilabel "
                        "to auto or true to score the data as multi-label")
    return mode is True or listed is not None


def targets(data: Embedded, num_classes: int, names_from) -> torch.Tensor:
    """[N, C] bool: which classes each item is labelled with (a plain label is a list of one). A UserError
    naming the item for a class index outside the class names of `names_from`, or when no item has a class."""
    out = torch.zeros(len(data), num_classes, dtype=torch.bool)
    for row, (key, label, labels) in enumerate(zip(data.keys, data.labels.tolist(), data.label_lists)):
        entries = labels if labels is not None else (label,)
        outside = [c for c in entries if not 0 <= c < num_classes]
        if outside:
            raise UserError(f"{names_from}: lists {num_classes} class names but item {key!r} holds label "
                            f"{outside[0]} (labels must be 0..{num_classes - 1})")
        out[row, list(entries)] = True
    if not out.any():
        raise UserError(f"{names_from}: no item carries a class (every label list is empty): mAP is undefined")
    return out
