"""Read csv / tsv / jsonl / parquet manifests (optionally gzipped) into sample specs.

Text manifests are decoded with ``surrogateescape`` so that one row with bytes that are not
UTF-8 becomes one failed sample (reason ``bad_encoding``) instead of aborting the whole file. Likewise a
media cell that is not a path (``bad_manifest_row``) and, in a manifest with a label column, a row whose label
is empty, null, missing or neither a class index nor a class name (``bad_label``, see labels.py) fail alone.
A label may be a label list, written as evaluation reads it: a JSON (or parquet) list, or in CSV/TSV a cell of
``;``-separated entries (mmcl.data.label.split_list), a lone ``;`` being the empty list.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_tools.errors import SampleError
from data_tools.labels import MISSING, resolve
from data_tools.spec import SampleSpec, make_key, mark_duplicate_keys
from data_tools.text import as_captions, is_utf8
from mmcl.data.label import split_list
from mmcl.errors import UserError


@dataclass(frozen=True)
class ManifestColumns:
    """Column names; None (or empty) means "the conventional name, if the manifest has it"."""

    image: str | None = None
    audio: str | None = None
    captions: tuple[str, ...] = ()
    label: str | None = None
    key: str | None = None
    keep: tuple[str, ...] = ()

    def to_read(self) -> dict[str, Any]:
        return {
            "image": self.image or "image",
            "audio": self.audio or "audio",
            "captions": self.captions or ("caption",),
            "label": self.label or "label",
            "key": self.key or "key",
            "keep": self.keep,
        }

    def explicit(self) -> list[str]:
        """Names the user gave: each must be a column of the manifest."""
        return [n for n in (self.image, self.audio, *self.captions, self.label, self.key, *self.keep) if n]


def _open_text(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")


def _kind(path: Path) -> str:
    return path.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]


def _rows(path: Path) -> Iterator[tuple[dict | None, str | None]]:
    """Yield (row, None) or (None, why the row is unreadable), one per data row."""
    kind = _kind(path)
    if kind == "parquet":
        import pyarrow.parquet

        try:
            batches = pyarrow.parquet.ParquetFile(path).iter_batches()
            for batch in batches:
                for row in batch.to_pylist():
                    yield row, None
        except (OSError, ValueError, pyarrow.ArrowException) as err:
            raise UserError(f"{path}: cannot read parquet: {err}") from None
        return
    with _open_text(path) as f:
        if kind == "jsonl":
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    yield None, f"not JSON: {err}"
                    continue
                yield (row, None) if isinstance(row, dict) else (None, "not a JSON object")
        else:
            reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
            for row in reader:
                # DictReader pads a short row with None and files a long row's extras under None.
                extra, values = row.pop(None, []), [v for v in row.values() if v is not None]
                if extra or len(values) < len(row):
                    yield None, f"{len(values) + len(extra)} fields, the header has {len(reader.fieldnames)}"
                else:
                    yield row, None


def _not_utf8(value: Any) -> bool:
    if isinstance(value, str):
        return not is_utf8(value)
    if isinstance(value, (list, tuple)):
        return any(_not_utf8(v) for v in value)
    return False


def _media_path(value: Any, field: str) -> str | None:
    """A cell naming a media file: None when empty (no such media), ValueError naming the cell for another type."""
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"{field} {repr(value)[:40]} is a {type(value).__name__}, expected a path string")


def _spec_from_row(row: dict, index: int, source: str, base: Path, cols: dict[str, Any]) -> SampleSpec:
    key = row.get(cols["key"])
    spec = SampleSpec(key=f"{index:09d}" if key in (None, "") else make_key(str(key)), source=source)
    try:
        for field in ("image", "audio"):
            path = _media_path(row.get(cols[field]), field)
            if path:
                setattr(spec, field, str(base / path))
    except ValueError as err:
        spec.error = ("bad_manifest_row", f"{source}: {err}")
        return spec
    try:
        spec.captions = tuple(c for name in cols["captions"] for c in as_captions(row.get(name), source))
    except SampleError as err:
        spec.error = (err.reason, err.detail)
        return spec
    spec.meta = {name: row.get(name) for name in cols["keep"]}
    return spec


def _label_cell(value: Any, text_cells: bool) -> Any:
    """A label cell, with a label list as the tuple of its entries; ValueError for a malformed list."""
    if isinstance(value, list):
        return tuple(value)
    listed = split_list(value) if text_cells and isinstance(value, str) else None
    return value if listed is None else listed


def _assign_labels(specs: list[SampleSpec], cells: list, column: str, classnames: list[str] | None) -> list[str]:
    """Class indices onto the specs, or a bad_label failure; only known once every row is read, as the column
    holds indices or names by what all its cells hold, and a jsonl row may leave it out."""
    resolved, names = resolve(cells, column, classnames)
    for spec, label in zip(specs, resolved):
        if spec.error is not None:
            continue
        if isinstance(label, str):
            spec.error = ("bad_label", f"{spec.source}: {label}")
        else:
            spec.label = label
    return names


def read_manifest(path: Path, columns: ManifestColumns, classnames: list[str] | None = None) -> tuple[list[SampleSpec], list[str]]:
    """One spec per data row, in file order, and the class names when labels are names (else empty); relative
    paths are taken from the manifest's directory.

    Rows are streamed (only the specs are kept), and column names are checked against every
    name seen once the file has been read, since jsonl rows need not all have the same keys.
    """
    cols, seen, specs, label_cells = columns.to_read(), set(), [], []
    text_cells = _kind(path) in ("csv", "tsv")  # where a label list is a `;`-separated cell, not a list
    for index, (row, problem) in enumerate(_rows(path)):
        source = f"{path} row {index + 1}"
        if row is None:
            specs.append(SampleSpec(key=f"{index:09d}", source=source, error=("bad_manifest_row", f"{source}: {problem}")))
            label_cells.append(MISSING)
            continue
        seen.update(row)
        if _not_utf8(list(row.values())):
            specs.append(SampleSpec(key=f"{index:09d}", source=source, error=("bad_encoding", f"{source}: not UTF-8")))
            label_cells.append(MISSING)  # its label is no class name to number
        else:
            spec = _spec_from_row(row, index, source, path.parent, cols)
            specs.append(spec)
            try:
                label_cells.append(_label_cell(row.get(cols["label"], MISSING), text_cells))
            except ValueError as err:
                spec.error = spec.error or ("bad_label", f"{source}: {err}")
                label_cells.append(MISSING)
    if not seen:
        raise UserError(f"{path}: the manifest has no readable rows")
    listing = ", ".join(sorted(map(str, seen)))
    for name in columns.explicit():
        if name not in seen:
            raise UserError(f"{path}: no column {name!r} (columns: {listing})")
    if not any(name in seen for name in (cols["image"], cols["audio"], *cols["captions"])):
        raise UserError(f"{path}: no image, audio or caption column; name them with --image-col/--audio-col/--caption-col (columns: {listing})")
    names = _assign_labels(specs, label_cells, cols["label"], classnames) if cols["label"] in seen else []
    mark_duplicate_keys(specs)
    return specs, names
