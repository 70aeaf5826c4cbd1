"""Read csv / tsv / jsonl / parquet manifests (optionally gzipped) into sample specs.

Text manifests are decoded with ``surrogateescape`` so that one row with bytes that are not
UTF-8 becomes one failed sample (reason ``bad_encoding``) instead of aborting the whole file.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_tools.spec import SampleSpec, make_key, mark_duplicate_keys
from data_tools.text import as_captions, is_utf8
from mmcl.errors import UserError


@dataclass(frozen=True)
class ManifestColumns:
    """Column names; None means "use the conventional name if the manifest has it"."""

    image: str | None = None
    audio: str | None = None
    captions: tuple[str, ...] = ()
    label: str | None = None
    key: str | None = None
    keep: tuple[str, ...] = ()


_CONVENTIONAL = {"image": "image", "audio": "audio", "captions": "caption", "label": "label", "key": "key"}


def _open_text(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")


def _rows(path: Path) -> Iterator[tuple[dict | None, str | None]]:
    """Yield (row, None) or (None, why the row is unreadable), one per data row."""
    kind = path.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
    if kind == "parquet":
        import pyarrow.parquet

        try:
            table = pyarrow.parquet.read_table(path)
        except Exception as err:  # pyarrow raises several unrelated types for a bad file
            raise UserError(f"{path}: cannot read parquet: {err}") from None
        for row in table.to_pylist():
            yield row, None
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


def _resolve_columns(path: Path, header: set[str], columns: ManifestColumns) -> dict[str, Any]:
    """Explicit column names must exist; conventional ones are used only when present."""
    resolved: dict[str, Any] = {}
    for field in ("image", "audio", "label", "key"):
        name = getattr(columns, field)
        if name is not None and name not in header:
            raise UserError(f"{path}: no column {name!r} (columns: {', '.join(sorted(header))})")
        resolved[field] = name if name is not None else (_CONVENTIONAL[field] if _CONVENTIONAL[field] in header else None)
    captions = columns.captions or ((_CONVENTIONAL["captions"],) if _CONVENTIONAL["captions"] in header else ())
    for name in (*captions, *columns.keep):
        if name not in header:
            raise UserError(f"{path}: no column {name!r} (columns: {', '.join(sorted(header))})")
    resolved["captions"], resolved["keep"] = captions, columns.keep
    if not (resolved["image"] or resolved["audio"] or captions):
        raise UserError(
            f"{path}: no image, audio or caption column; name them with --image-col/--audio-col/--caption-col "
            f"(columns: {', '.join(sorted(header))})"
        )
    return resolved


def _spec_from_row(row: dict, index: int, source: str, base: Path, cols: dict[str, Any]) -> SampleSpec:
    key = make_key(str(row[cols["key"]])) if cols["key"] else f"{index:09d}"
    spec = SampleSpec(key=key, source=source)
    for field in ("image", "audio"):
        value = row.get(cols[field]) if cols[field] else None
        if value:
            setattr(spec, field, str(base / value))
    spec.captions = tuple(c for name in cols["captions"] for c in as_captions(row.get(name)))
    label = row.get(cols["label"]) if cols["label"] else None
    if label not in (None, ""):
        try:
            spec.label = int(label)
        except (TypeError, ValueError):
            spec.error = ("bad_label", f"{source}: label {label!r} is not an integer")
    spec.meta = {name: row.get(name) for name in cols["keep"]}
    return spec


def read_manifest(path: Path, columns: ManifestColumns) -> list[SampleSpec]:
    """One spec per data row, in file order; relative paths are taken from the manifest's directory."""
    rows = list(_rows(path))
    header = set().union(*(row.keys() for row, _ in rows if row is not None)) if rows else set()
    if not header:
        raise UserError(f"{path}: the manifest has no rows")
    cols = _resolve_columns(path, header, columns)
    specs = []
    for index, (row, problem) in enumerate(rows):
        source = f"{path} row {index + 1}"
        if row is None:
            specs.append(SampleSpec(key=f"{index:09d}", source=source, error=("bad_manifest_row", f"{source}: {problem}")))
        elif _not_utf8(list(row.values())):
            specs.append(SampleSpec(key=f"{index:09d}", source=source, error=("bad_encoding", f"{source}: not UTF-8")))
        else:
            specs.append(_spec_from_row(row, index, source, path.parent, cols))
    mark_duplicate_keys(specs)
    return specs
