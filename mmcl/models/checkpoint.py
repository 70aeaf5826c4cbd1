"""Model checkpoints: a folder holding `model.safetensors` and the `model.yaml` that rebuilds it.

Safetensors holds tensors only, so loading a checkpoint never runs code from the file. The folder is
self-contained: towers' initial-weight files are not read again, and a Hugging Face text tower's config and
tokenizer files are copied into a subfolder named after its modality.
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

WEIGHTS = "model.safetensors"
CONFIG = "model.yaml"


def _self_contained_config(model, folder: Path) -> ModelConfig:
    """The model's config with weight files dropped (the checkpoint holds them) and HF files copied in."""
    towers = {}
    for modality, tower_cfg in model.config.towers.items():
        update: dict = {"weights": None}
        if tower_cfg.type == "hf_text":
            tower = model.towers[modality]
            tower.encoder.model.config.save_pretrained(folder / modality)
            tower.tokenizer.save_pretrained(folder / modality)
            update.update(path=modality, pretrained=False)
        towers[modality] = tower_cfg.model_copy(update=update)
    # The towers an `open_clip:` source expanded to stay; its checkpoint file is no longer needed.
    return model.config.model_copy(update={"towers": towers, "open_clip": None})


def save_model(model, folder: str | Path, state: dict | None = None) -> Path:
    """Write weights and config atomically: into a temporary folder, then renamed into place. `state` is the
    model's full state dict when it cannot be read off `model` itself (gathered from FSDP shards)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in (state or model.state_dict()).items()}
    save_file(state, tmp / WEIGHTS)
    cfg = _self_contained_config(model, tmp)
    (tmp / CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
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
    cfg = ModelConfig.model_validate(yaml.safe_load((folder / CONFIG).read_text()))
    for tower_cfg in cfg.towers.values():
        if tower_cfg.type == "hf_text" and not Path(tower_cfg.path).is_absolute():
            tower_cfg.path = str(folder / tower_cfg.path)
    from mmcl.models.factory import create_model  # here: the checkpoint layout stays light to import

    model, transforms, tokenizer = create_model(cfg)
    try:
        state = load_file(folder / WEIGHTS)
    except SafetensorError as err:
        raise UserError(f"{folder / WEIGHTS}: not a valid safetensors file ({err}); "
                        "mmcl never unpickles checkpoint files") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{folder / WEIGHTS}: weights do not match {CONFIG}: missing {missing}, unexpected {unexpected}")
    return model, transforms, tokenizer
