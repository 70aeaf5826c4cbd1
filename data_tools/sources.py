"""Turn a user's input (a folder tree, class folders or a manifest) into an ordered list of sample specs.

A spec names where a sample's parts come from; nothing is decoded here. Problems that are
known from the listing alone (a duplicate key, a bad manifest row) are recorded on the spec so
the sample is counted and named as a failure in the shard it would have gone to.
"""

from __future__ import annotations

import os
from pathlib import Path

from data_tools.audio import AUDIO_EXTENSIONS
from data_tools.image import IMAGE_EXTENSIONS
from data_tools.manifests import read_manifest
from data_tools.spec import SampleSpec, make_key, mark_duplicate_keys
from data_tools.text import is_utf8, printable
from mmcl.errors import UserError

LAYOUTS = ("auto", "folder", "class_folders", "manifest")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


_SLOT_OF_EXTENSION = {
    **{ext: "image" for ext in IMAGE_EXTENSIONS},
    **{ext: "audio" for ext in AUDIO_EXTENSIONS},
    "txt": "text",
    "json": "meta_path",
}


def _walk_files(root: Path, skip: Path | None):
    """Relative paths of visible files under root, in a fixed (sorted) order, leaving out ``skip``."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(dirpath, d).resolve() != skip)
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath, name).relative_to(root)


def scan_folder(root: Path, class_folders: bool, skip: Path | None = None) -> tuple[list[SampleSpec], list[str]]:
    """Group files sharing a stem into samples; with class_folders the top directory is the label.

    ``skip`` is the output directory, which a user may well put inside the input.
    """
    skip = skip.resolve() if skip is not None else None
    classes = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.resolve() != skip
    ) if class_folders else []
    label_of = {name: i for i, name in enumerate(classes)}
    specs: dict[str, SampleSpec] = {}
    for rel in _walk_files(root, skip):
        slot = _SLOT_OF_EXTENSION.get(rel.suffix.lower().lstrip("."))
        if slot is None or (class_folders and len(rel.parts) < 2):
            continue
        stem = rel.with_suffix("").as_posix()
        spec = specs.get(stem)
        if spec is None:
            label = label_of[rel.parts[0]] if class_folders else None
            spec = specs[stem] = SampleSpec(key=make_key(printable(stem)), source=printable(str(root / stem)), label=label)
            if not is_utf8(stem):
                spec.error = ("bad_encoding", f"{spec.source}: file name is not UTF-8")
        if getattr(spec, slot) is not None:
            spec.error = spec.error or ("duplicate_key", f"{printable(str(root / rel))} and {getattr(spec, slot)} both give key {spec.key!r}")
            continue
        setattr(spec, slot, str(root / rel))
    ordered = list(specs.values())
    mark_duplicate_keys(ordered)
    if class_folders and not classes:
        raise UserError(f"{root}: --class-folders expects one sub-directory per class (CLASS/NAME.jpg), found none")
    return ordered, [c.replace("_", " ") for c in classes]


def detect_layout(source: Path) -> str:
    if source.is_dir():
        return "folder"
    name = source.name.lower().removesuffix(".gz")
    if name.endswith(MANIFEST_SUFFIXES):
        return "manifest"
    raise UserError(f"{source}: not a directory or a manifest ({', '.join(MANIFEST_SUFFIXES)}, optionally .gz)")


def require_source(source: Path) -> None:
    if not source.exists():
        raise UserError(f"{source}: no such file or directory")


def load_specs(source: Path, layout: str, columns, output: Path | None = None,
               classnames: list[str] | None = None) -> tuple[list[SampleSpec], list[str]]:
    """Specs in their final order, and the class names found (empty unless the input names classes); a
    manifest's text labels are numbered by ``classnames`` when given."""
    require_source(source)
    if layout not in LAYOUTS:
        raise UserError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "manifest":
        if source.is_dir():
            raise UserError(f"{source}: a manifest must be a file, this is a directory")
        return read_manifest(source, columns, classnames)
    if not source.is_dir():
        raise UserError(f"{source}: {layout} input must be a directory")
    return scan_folder(source, class_folders=layout == "class_folders", skip=output)
