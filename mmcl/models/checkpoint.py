"""Model checkpoints: a folder holding `model.safetensors` and the `model.yaml` that rebuilds it.

Safetensors holds tensors only, so loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmcl.errors import UserError
from mmcl.models.config import ModelConfig
from mmcl.models.factory import create_model

WEIGHTS = "model.safetensors"
CONFIG = "model.yaml"


def save_model(model, folder: str | Path) -> Path:
    """Write weights and config atomically: into a temporary folder, then renamed into place."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp / WEIGHTS)
    (tmp / CONFIG).write_text(yaml.safe_dump(model.config.model_dump(mode="json"), sort_keys=False))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_model(folder: str | Path):
    """Rebuild (model, transforms, tokenizer) from a checkpoint folder alone."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: not a model checkpoint (missing {name})")
    cfg_data = yaml.safe_load((folder / CONFIG).read_text())
    model, transforms, tokenizer = create_model(ModelConfig.model_validate(cfg_data))
    try:
        state = load_file(folder / WEIGHTS)
    except SafetensorError as err:
        raise UserError(f"{folder / WEIGHTS}: not a valid safetensors file ({err}); "
                        "mmcl never unpickles checkpoint files") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{folder / WEIGHTS}: weights do not match {CONFIG}: missing {missing}, unexpected {unexpected}")
    return model, transforms, tokenizer
