"""The built-in model configs (mmcl/models/configs/*.yaml): their names and what each is for, read without
building anything."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def builtin_models() -> dict[str, str]:
    """{name: description}, the description being the YAML file's leading comment block."""
    models = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        comment = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        models[path.stem] = " ".join(comment)
    return models
