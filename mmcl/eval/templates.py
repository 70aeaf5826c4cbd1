"""Prompt templates for zero-shot classification: the one built-in set, and which set a task uses and why.

Every data route (class folders, shards, manifest; `mmcl eval` flags, a task file, training's periodic
evaluation) resolves templates here by the same order, so the same data scores the same wherever it comes from,
and the result records the set and its origin.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.errors import UserError
from mmcl.eval.datasets import TEMPLATES_FILE, read_lines

DEFAULT_TEMPLATES = {
    "image": ("a photo of a {c}.", "a picture of a {c}.", "an image of a {c}.", "a {c}."),
    "audio": ("This is a sound of {c}.",),  # LAION-CLAP's ESC-50 prompt
}


def check_templates(templates: list[str], where: str) -> list[str]:
    bad = [t for t in templates if "{c}" not in t]
    if not templates or bad:
        raise UserError(f"{where}: every template needs a {{c}} placeholder" + (f"; bad: {bad[0]!r}" if bad else ""))
    return templates


def read_templates(path: str | Path) -> list[str]:
    """Prompt templates, one per line with `{c}` where the class name goes (CLIP_benchmark's format)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: templates file not found")
    return check_templates(read_lines(path), str(path))


def resolve_templates(given: list[str] | str | None, modality: str, source, where: str) -> tuple[list[str], str]:
    """The templates a task uses and where they came from, first found of: the task's own (a list, or a file
    path), the dataset's templates file, the built-in set for `modality`. `where` names the task in errors."""
    if isinstance(given, str):
        return read_templates(given), f"templates file {given}"
    if given is not None:
        return check_templates(list(given), f"{where}: templates"), "the task's templates"
    if source.templates is not None:
        file = Path(source.path) / TEMPLATES_FILE
        return check_templates(source.templates, str(file)), f"the dataset's templates file {file}"
    return list(DEFAULT_TEMPLATES[modality]), f"built-in {modality} templates"
