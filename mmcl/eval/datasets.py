"""Evaluation data sources: a shard set (CLIP_benchmark's `wds/` layout), class folders, or a manifest.

A source lists raw items (encoded media or file paths, captions, label) in a fixed order, split into parts
(a shard, or a run of files) that loader workers share out. Nothing is decoded here; see `loading.py`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


from mmcl.data import audio, image, text
from mmcl.data.failures import FailureCounter, SampleError
from mmcl.data.label import parse_label, parse_labels
from mmcl.data import expand_urls
from mmcl.data.streams import read_shards
from mmcl.errors import UserError
from mmcl.eval.label_lists import LIST_HINT, SEPARATOR, manifest_list

EXTENSIONS = {"image": image.EXTENSIONS, "audio": audio.EXTENSIONS}
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
FORMATS = ("auto", "shards", "class_folders", "manifest")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")
ITEMS_PER_PART = 256  # files per work unit of a file list; a multiple of embed.FORWARD_ROWS wastes no pass


@dataclass
class RawItem:
    """One sample before decoding: `media[modality]` is encoded bytes or a file path; `label` a class index, or a
    tuple of them for a label list (multi-label data, see `label_lists`)."""

    key: str
    media: dict[str, bytes | Path] = field(default_factory=dict)
    captions: list[str] | None = None
    label: int | tuple[int, ...] | None = None


@dataclass
class BadRow:
    """A manifest row that cannot be used (e.g. a media path that is not a string): skipped, counted and named."""

    key: str
    detail: str


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Source:
    """A dataset on disk. `parts()` are picklable callables, each yielding its RawItems in order."""

    def __init__(self, path: Path, format: str, classnames: list[str] | None, templates: list[str] | None,
                 classnames_file: Path | None = None):
        self.path = path
        self.format = format
        self.classnames = classnames
        self.templates = templates
        self.classnames_file = classnames_file  # named in errors about the label text
        self.split: str | None = None  # the part of `path` read, where a split was asked for

    def parts(self) -> list:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"path": str(self.path), "format": self.format,
                "classnames_file": str(self.classnames_file) if self.classnames_file else None,
                **({"split": self.split} if self.split is not None else {})}


def _modality_of_extension(ext: str) -> str | None:
    return next((m for m, exts in EXTENSIONS.items() if ext in exts), None)


class ShardSource(Source):
    """WebDataset shards: `DIR/*.tar`, or CLIP_benchmark's `DIR/test/*.tar` (`DIR/SPLIT/*.tar` for a named split),
    with classnames.txt and templates in DIR."""

    def __init__(self, path: Path, classnames_file: Path | None = None, split: str | None = None):
        if split is not None:
            if not any((path / split).glob("*.tar")):
                raise UserError(f"{path}: no shards in its split folder {split}/ (splits here: "
                                f"{', '.join(_split_folders(path)) or 'none'})")
            shard_dir = path / split
        else:
            test = path / "test"
            shard_dir = test if test.is_dir() and any(test.glob("*.tar")) else path
        self.urls = expand_urls(str(shard_dir))
        classnames_file = classnames_file or (path / CLASSNAMES_FILE if (path / CLASSNAMES_FILE).is_file() else None)
        templates_file = path / TEMPLATES_FILE
        super().__init__(path, "shards", read_lines(classnames_file) if classnames_file else None,
                         read_lines(templates_file) if templates_file.is_file() else None, classnames_file)
        self.split = split

    def parts(self) -> list:
        return [_ShardPart(url) for url in self.urls]


class _ShardPart:
    def __init__(self, url: str):
        self.url = url

    def __call__(self, failures: FailureCounter) -> Iterator[RawItem]:
        for raw in read_shards([self.url], failures):
            key = raw.get("__key__", "?")
            try:
                yield _raw_item(key, raw)
            except (UnicodeDecodeError, ValueError) as err:
                failures(SampleError(key, "bad text or label", str(err)))


def _raw_item(key: str, raw: dict) -> RawItem:
    media = {}
    for ext, value in raw.items():
        modality = _modality_of_extension(ext)
        if modality is not None and modality not in media:
            media[modality] = value
    label = parse_labels(raw["cls"]) if "cls" in raw else None
    return RawItem(key, media, text.decode_captions(raw), label)


class ListSource(Source):
    """A list of items whose media are file paths; parts are runs of ITEMS_PER_PART items."""

    def __init__(self, path: Path, format: str, items: list[RawItem | BadRow], classnames, classnames_file=None):
        if not items:
            raise UserError(f"{path}: no samples found")
        self.items = items
        super().__init__(path, format, classnames, None, classnames_file)

    def parts(self) -> list:
        return [_ListPart(self.items[i:i + ITEMS_PER_PART]) for i in range(0, len(self.items), ITEMS_PER_PART)]


class _ListPart:
    def __init__(self, items: list[RawItem | BadRow]):
        self.items = items

    def __call__(self, failures: FailureCounter) -> Iterator[RawItem]:
        for item in self.items:
            if isinstance(item, BadRow):  # reported here, by the part that holds it, so it is counted once
                failures(SampleError(item.key, "bad manifest row", item.detail))
            else:
                yield item


def class_folders(root: Path, classnames_file: Path | None = None) -> ListSource:
    """`ROOT/CLASS/NAME.ext` image or audio files; labels follow sorted folder names, `_` read as a space."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise UserError(f"{root}: expected one sub-folder per class (ROOT/CLASS/NAME.jpg or .flac), found none")
    classnames = read_lines(classnames_file) if classnames_file else [d.name.replace("_", " ") for d in class_dirs]
    if len(classnames) != len(class_dirs):
        raise UserError(f"{classnames_file}: lists {len(classnames)} class names for {len(class_dirs)} class folders in {root}")
    items = []
    for label, folder in enumerate(class_dirs):
        for path in sorted(folder.iterdir()):
            modality = _modality_of_extension(path.suffix.lower().lstrip("."))
            if modality is not None:
                items.append(RawItem(f"{folder.name}/{path.stem}", {modality: path}, None, label))
    return ListSource(root, "class_folders", items, classnames, classnames_file)


def _split_folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def manifest(path: Path, classnames_file: Path | None = None, split: str | None = None) -> ListSource:
    """CSV/TSV (header row) or JSON Lines with `image` and/or `audio` paths (relative to the manifest's folder),
    optional `text` (JSON Lines: a string or a list of captions) and optional `label` (an index or a class name,
    or a label list of them: see `label_lists`).

    In a manifest with labels (a `label` column, or any JSON line with one) every row needs one: a missing or bad
    label is an error naming the row, as it would shift the class list. A row whose media or text has the wrong
    type is skipped and counted as a bad manifest row. With `split`, only the rows whose `split` column holds it are
    items, while class names from label text come from every row, so that all splits number the classes alike.
    """
    rows, labelled = _manifest_rows(path)
    labels = [_manifest_label(row.get("label"), path, number) if labelled else None
              for number, row in enumerate(rows, start=1)]
    classnames = read_lines(classnames_file) if classnames_file else None
    named = sorted({entry for label in labels for entry in _entries(label) if isinstance(entry, str)})
    if named and classnames is None and any(isinstance(label, tuple) for label in labels):
        _check_separators(path, labels)
    if named and classnames is None:
        classnames = named  # label text given in the manifest itself: classes in sorted order
    for number, label in enumerate(labels, start=1):
        unknown = next((entry for entry in _entries(label) if isinstance(entry, str) and entry not in classnames),
                       None)
        if unknown is not None:
            hint = f" ({LIST_HINT})" if any(mark in unknown for mark in ",|" + SEPARATOR) else ""
            raise UserError(f"{path} row {number}: label {unknown!r} is not one of the class names{hint}")
    chosen = _split_rows(path, rows, split)
    items = [_manifest_item(path, number, row, _resolved(label, classnames))
             for number, (row, label) in enumerate(zip(rows, labels), start=1) if number in chosen]
    source = ListSource(path, "manifest", items, classnames, classnames_file)
    source.split = split
    return source


def _split_rows(path: Path, rows: list[dict], split: str | None) -> set[int]:
    """The (1-based) numbers of the rows in `split`; every row without one. A UserError where none is in it."""
    if split is None:
        return set(range(1, len(rows) + 1))
    chosen = {number for number, row in enumerate(rows, start=1) if str(row.get("split", "")).strip() == split}
    if not chosen:
        found = sorted({str(row["split"]).strip() for row in rows if row.get("split") not in (None, "")})
        raise UserError(f"{path}: no row has split {split!r} (" + (f"its splits: {', '.join(found)}" if found else
                        "it has no split column") + ")")
    return chosen


def _check_separators(path: Path, labels: list) -> None:
    """In multi-label data whose classes are its own label texts, a text holding another list separator is most
    likely a list written wrongly, which would otherwise become a class of its own."""
    for number, label in enumerate(labels, start=1):
        odd = next((e for e in _entries(label) if isinstance(e, str) and any(mark in e for mark in ",|")), None)
        if odd is not None:
            raise UserError(f"{path} row {number}: label {odd!r} looks like a label list with the wrong separator "
                            f"({LIST_HINT}); if it is one class's name, give the class names file")


def _entries(label) -> tuple:
    return label if isinstance(label, tuple) else (label,)


def _resolved(label, classnames: list[str] | None):
    """A row's label with class names replaced by their indices."""
    index = [classnames.index(e) if isinstance(e, str) else e for e in _entries(label)]
    return tuple(index) if isinstance(label, tuple) else index[0]


def _manifest_rows(path: Path) -> tuple[list[dict], bool]:
    """The rows as dicts, and whether the manifest carries labels."""
    if path.suffix != ".jsonl":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            return list(reader), "label" in (reader.fieldnames or ())
    rows = []
    for number, line in enumerate((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()),
                                  start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} row {number}: not valid JSON: {err}") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} row {number}: a {type(row).__name__}, expected a JSON object")
        rows.append(row)
    return rows, any("label" in row for row in rows)


def _manifest_item(path: Path, number: int, row: dict, label: int | tuple[int, ...] | None) -> RawItem | BadRow:
    """The row's item, or a BadRow naming what is wrong with its media or text."""
    key = f"{path.name}:{number}"
    try:
        media = {m: path.parent / value for m in EXTENSIONS if (value := _manifest_path(row.get(m), m))}
        captions = None if row.get("text") == "" else text.captions_from_json(row)  # an empty CSV cell: no text
    except ValueError as err:
        return BadRow(key, f"{path} row {number}: {err}")
    return RawItem(key, media, captions, label)


def _manifest_path(value, modality: str) -> str | None:
    """A row's media path; None when absent or empty (the item has no such media), ValueError for another type."""
    if value is None or isinstance(value, str):
        return value or None
    raise ValueError(f"{modality} {str(value)[:40]!r} is a {type(value).__name__}, expected a path string")


def _manifest_label(value, path: Path, number: int) -> int | str | tuple[int | str, ...]:
    """A labelled row's class index (an integer, or the text of one) or class name, or a label list of them; a
    UserError naming the row for anything else."""
    listed = manifest_list(value, path, number)
    if listed is not None:
        return listed
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{path} row {number}: the label is {'empty' if value is not None else 'missing or null'}; "
                        "in a manifest with labels every row needs one (a class index or a class name)")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{path} row {number}: label {str(value)[:40]!r} is a {type(value).__name__}, expected a "
                        "class index or a class name")
    if isinstance(value, str) and not _is_integer(value):
        return value
    try:
        return parse_label(str(value))
    except ValueError as err:
        raise UserError(f"{path} row {number}: {err}") from None


def _is_integer(text: str) -> bool:
    """Whether a label text is an index (then checked by parse_label, so "-1" is an error) rather than a name."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def open_spec(spec) -> Source:
    """The source a task's data spec (`mmcl.eval.tasks.DataSpec`) names."""
    return open_source(spec.path, spec.format, spec.classnames, spec.split)


def open_source(path: str | Path, format: str = "auto", classnames_file: str | Path | None = None,
                split: str | None = None) -> Source:
    """The source at `path` (its part `split`, if given); `auto` tells the formats apart by what the path holds."""
    path = Path(path)
    classnames_file = Path(classnames_file) if classnames_file else None
    if classnames_file is not None and not classnames_file.is_file():
        raise UserError(f"{classnames_file}: class names file not found")
    if not path.exists():
        raise UserError(f"{path}: evaluation data not found")
    if format == "auto":
        if path.is_file():
            format = "manifest"
        elif any(path.glob("*.tar")) or any((path / (split or "test")).glob("*.tar")):
            format = "shards"
        else:
            format = "class_folders"
    if format == "manifest":
        if path.suffix not in MANIFEST_SUFFIXES:
            raise UserError(f"{path}: a manifest must be one of {', '.join(MANIFEST_SUFFIXES)}")
        return manifest(path, classnames_file, split)
    if not path.is_dir():
        raise UserError(f"{path}: expected a folder for format {format}")
    if format == "shards":
        return ShardSource(path, classnames_file, split)
    if split is None:
        return class_folders(path, classnames_file)
    if not (path / split).is_dir():
        raise UserError(f"{path}: no split folder {split}/ (splits here: {', '.join(_split_folders(path)) or 'none'})")
    source = class_folders(path / split, classnames_file)
    source.split = split
    return source
