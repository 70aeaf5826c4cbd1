"""A manifest's label column as class indices: integer cells as they are, class names (text such as "dog") by
their place in --classnames, or else in the sorted names, as torchvision's ImageFolder numbers class folders.

The column is read as names when more of its cells are names (text that is not a number) than numbers, so that a
few stray words in a column of indices, or a few numbers in a column of names, are the skipped and counted
samples, not the rest of the column; a number is never a class name, as "10" sorting before "2" would number
classes silently wrong. The mapping is made from the whole manifest,
which every --part reads, so all parts number the classes alike.

A cell may hold a label list (a tuple, from a JSON list or a `;`-separated CSV/TSV cell): its entries count as
cells do, and each is resolved by the same rules; one bad entry makes the whole row a bad label.
"""

from __future__ import annotations

import math
from typing import Any

from mmcl.data.label import parse_label
from mmcl.errors import UserError

MISSING = object()  # a row without the label column (jsonl rows need not share keys)


def _is_number(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    try:
        return math.isfinite(float(value))  # "nan" and "inf" may well be names
    except (TypeError, ValueError):
        return False


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not _is_number(value)


def _blank(value: Any, column: str) -> str | None:
    """Why a cell holds no label at all, or None."""
    if value is MISSING:
        return f"no {column!r}, which every row of a labelled manifest needs"
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"the label is {'null' if value is None else 'empty'}; every row of a labelled manifest needs one"
    return None


def class_index(value: Any) -> int:
    """An integer cell as a class index, checked by mmcl's parse_label; ValueError naming what is wrong."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # pandas stores an integer column that had gaps as floats
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"label {repr(value)[:40]} is a {type(value).__name__}, expected a class index")
    return parse_label(str(value))


def _index_of_names(names: set[str], classnames: list[str] | None) -> dict[str, int]:
    if classnames is None:
        return {name: i for i, name in enumerate(sorted(names))}
    index = {}
    for i, name in enumerate(classnames):
        if name in index:
            raise UserError(f"--classnames: {name!r} is listed twice (lines {index[name] + 1} and {i + 1}), "
                            "so labels with that name have no single class index")
        index[name] = i
    return index


def resolve(cells: list[Any], column: str, classnames: list[str] | None) -> tuple[list[int | tuple | str], list[str]]:
    """For each cell a class index (a tuple of them for a label list) or the reason it has none (a string), and
    the class names found (empty when the column holds indices: names then come from --classnames only).

    A name matches a --classnames line as written or with ``_`` read as a space (how class folders are named).
    """
    entries = [e for cell in cells for e in (cell if isinstance(cell, tuple) else (cell,))]
    if sum(map(_is_name, entries)) <= sum(map(_is_number, entries)):
        limit = len(classnames) if classnames else None
        return [_blank(c, column) or _each(c, lambda e: _as_index(e, limit)) for c in cells], []
    names = {e.strip() for e in entries if _is_name(e)}
    index = _index_of_names(names, classnames)
    example = min(names)
    resolved = [_blank(c, column) or _each(c, lambda e: _as_named(e, index, example)) for c in cells]
    shown = classnames if classnames is not None else [n.replace("_", " ") for n in sorted(names)]
    return resolved, shown


def _each(cell: Any, one) -> int | tuple[int, ...] | str:
    """`one` applied to a cell, or to each entry of a label list: the indices, or the first entry's reason."""
    if not isinstance(cell, tuple):
        return one(cell)
    found = [one(entry) for entry in cell]
    why = next((f for f in found if isinstance(f, str)), None)
    return tuple(found) if why is None else f"in label list {list(cell)!r}: {why}"


def _as_named(value: Any, index: dict[str, int], example: str) -> int | str:
    if not _is_name(value):
        kind = "a number" if _is_number(value) else f"a {type(value).__name__}"
        return f"label {value!r} is {kind} in a column of class names such as {example!r}"
    name = value.strip()
    found = index.get(name, index.get(name.replace("_", " ")))
    return f"label {name!r} is not one of the {len(index)} names in --classnames" if found is None else found


def _as_index(value: Any, limit: int | None) -> int | str:
    try:
        label = class_index(value)
    except ValueError as err:
        return str(err)
    if limit is not None and label >= limit:
        return f"label {label} is not a class index of --classnames ({limit} names: 0..{limit - 1})"
    return label
