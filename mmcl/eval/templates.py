"""Prompt templates for zero-shot classification: the one built-in set, and which set a task uses and why.

Every data route (class folders, shards, manifest; `mmcl eval` flags, a task file, training's periodic
evaluation) resolves templates here by the same order, so the same data scores the same wherever it comes from,
and the result records the set and its origin.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.config import read_json
from mmcl.errors import UserError
from mmcl.eval.datasets import TEMPLATES_FILE, read_lines

DEFAULT_TEMPLATES = {
    "image": ("a photo of a {c}.", "a picture of a {c}.", "an image of a {c}.", "a {c}."),
    "audio": ("This is a sound of {c}.",),  # LAION-CLAP's ESC-50 prompt
}


def check_templates(templates: list[str], where: str, allow_empty: bool = False) -> list[str]:
    bad = [t for t in templates if "{c}" not in t]
    if (not templates and not allow_empty) or bad:
        raise UserError(f"{where}: every template needs a {{c}} placeholder" + (f"; bad: {bad[0]!r}" if bad else ""))
    return templates


def read_templates(path: str | Path) -> list[str]:
    """Prompt templates, one per line with `{c}` where the class name goes (CLIP_benchmark's format)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: templates file not found")
    return check_templates(read_lines(path), str(path))


def resolve_templates(given: list[str] | str | None, modality: str, source, where: str,
                      class_specific: bool = False) -> tuple[list[str], str]:
    """The templates a task uses and where they came from, first found of: the task's own (a list, or a file
    path), the dataset's templates file, the built-in set for `modality`. `where` names the task in errors. With
    `class_specific` prompts beside them, the task's own list may be empty (the class prompts alone)."""
    if isinstance(given, str):
        return read_templates(given), f"templates file {given}"
    if given is not None:
        return check_templates(list(given), f"{where}: templates", allow_empty=class_specific), "the task's templates"
    if source.templates is not None:
        file = Path(source.path) / TEMPLATES_FILE
        return check_templates(source.templates, str(file)), f"the dataset's templates file {file}"
    return list(DEFAULT_TEMPLATES[modality]), f"built-in {modality} templates"


def read_class_prompts(given: dict[str, list[str]] | str, classnames: list[str], where: str) -> dict[str, list[str]]:
    """Class-specific prompts (CuPL, Pratt et al. 2023): `{class name: [whole prompts]}`, given inline or as a JSON
    file of that form (CuPL's published prompt files are). Every key must be a class name: a misspelt one would
    silently leave its class without them."""
    if isinstance(given, str):
        where, given = given, read_json(given, "a class prompts file ({class name: [prompts]})")
    if not isinstance(given, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) and p.strip() for p in v) for v in given.values()):
        raise UserError(f"{where}: class prompts must map each class name to a list of non-empty prompts")
    unknown = sorted(set(given) - set(classnames))
    if unknown:
        raise UserError(f"{where}: class prompts for {unknown[:5]}, which are not class names of the data "
                        f"(class names: {', '.join(classnames[:8])}{', ...' if len(classnames) > 8 else ''})")
    return given


def class_prompt_lists(classnames: list[str], templates: list[str], class_prompts: dict[str, list[str]],
                       where: str) -> list[list[str]]:
    """Per class, the generic templates filled with its name, then its own prompts: exactly the text the model
    reads for it."""
    per_class = [[t.replace("{c}", name) for t in templates] + list(class_prompts.get(name, []))
                 for name in classnames]
    empty = [name for name, row in zip(classnames, per_class) if not row]
    if empty:
        raise UserError(f"{where}: no prompt for class(es) {empty[:5]}: give them class prompts or keep generic "
                        "templates")
    return per_class
