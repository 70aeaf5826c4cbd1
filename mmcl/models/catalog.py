"""The built-in model configs (mmcl/models/configs/*.yaml): their names and what each is for, and a model config
from a name, YAML or dict, read without building anything (nor importing the tower libraries)."""

from __future__ import annotations

from pathlib import Path

from mmcl.config import read_yaml, validate
from mmcl.errors import UserError
from mmcl.models.config import ModelConfig

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


def list_models() -> list[str]:
    """Names of the built-in model configs."""
    return list(builtin_models())


def resolve_model_config(name_or_config: str | Path | dict | ModelConfig) -> ModelConfig:
    """A ModelConfig from a built-in name, a YAML path, a dict or a ModelConfig."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    if isinstance(name_or_config, dict):
        return validate(ModelConfig, name_or_config, "model config")
    path = Path(name_or_config)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_config}.yaml"
        if not path.is_file():
            raise UserError(f"unknown model {str(name_or_config)!r}; built-in models: {', '.join(list_models())}")
    return validate(ModelConfig, read_yaml(path), str(path))
