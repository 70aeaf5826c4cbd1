"""mmcl models in open_clip's own format: a folder `open_clip.create_model_and_transforms("local-dir:DIR")` loads.

The folder holds `open_clip_config.json` (`model_cfg`: open_clip's CLIP arguments; `preprocess_cfg`: the
evaluation preprocessing) and `open_clip_model.safetensors`. Only models made of open_clip's own towers convert
one to one: an `open_clip_vision` image tower and an `open_clip_text` text tower built on open_clip's text
transformer, with the same activation (open_clip's CLIP has one `quick_gelu` switch for both). Weights are renamed,
never recomputed, so open_clip computes exactly mmcl's embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from mmcl.errors import UserError
from mmcl.models.config import ModelConfig

CONFIG = "open_clip_config.json"
WEIGHTS = "open_clip_model.safetensors"
FORMATS_NOTE = ("`--format open_clip` needs exactly an image tower of type open_clip_vision and a text tower of type "
                "open_clip_text (open_clip's text transformer); `--format onnx` and `--format mmcl` take any model")


def check_convertible(cfg: ModelConfig) -> None:
    """Refuse, naming the reason, a model that open_clip's CLIP class cannot hold one to one."""
    kinds = {modality: tower.type for modality, tower in cfg.towers.items()}
    if kinds != {"image": "open_clip_vision", "text": "open_clip_text"}:
        raise UserError(f"cannot export towers {kinds} to open_clip: {FORMATS_NOTE}")
    image, text = cfg.towers["image"], cfg.towers["text"]
    if text.cfg.get("hf_model_name"):
        raise UserError(f"cannot export to open_clip: the text tower wraps Hugging Face model "
                        f"{text.cfg['hf_model_name']!r}; {FORMATS_NOTE}")
    if image.quick_gelu != text.quick_gelu:
        raise UserError("cannot export to open_clip: the image and text towers differ in quick_gelu, and open_clip's "
                        "CLIP has one switch for both")


def open_clip_config(cfg: ModelConfig, logit_bias: float | None) -> dict:
    """`open_clip_config.json` for a convertible model: architecture and evaluation preprocessing."""
    image, text = cfg.towers["image"], cfg.towers["text"]
    model_cfg = {"embed_dim": cfg.embed_dim, "quick_gelu": image.quick_gelu,
                 "vision_cfg": {**image.cfg, "image_size": image.image_size},
                 "text_cfg": {**text.cfg, "context_length": text.context_length}}
    if logit_bias is not None:  # makes open_clip create the parameter; the weights file sets its value
        model_cfg["init_logit_bias"] = logit_bias
    # mmcl's evaluation transform is open_clip's image_transform(size, is_train=False, mean, std) with its
    # defaults: bicubic resize of the shorter side, centre crop.
    preprocess_cfg = {"size": image.image_size, "mode": "RGB", "mean": list(image.mean), "std": list(image.std),
                      "interpolation": "bicubic", "resize_mode": "shortest"}
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def to_open_clip_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmcl image-text state dict under open_clip CLIP's names (its text tower's parts sit at the root)."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("towers.image.encoder."):
            renamed["visual." + key.removeprefix("towers.image.encoder.")] = value
        elif key.startswith("towers.text.encoder."):
            renamed[key.removeprefix("towers.text.encoder.")] = value
        elif key in ("logit_scale", "logit_bias"):
            renamed[key] = value.reshape(())  # open_clip keeps them 0-dimensional
        else:
            raise UserError(f"no open_clip name for weight {key!r}: {FORMATS_NOTE}, with no other parameters "
                            "(a learned missing-modality embedding, for one, has no place in open_clip's CLIP)")
    return renamed


def export_open_clip(model, output: Path) -> Path:
    """Write `model` (an mmcl MultimodalModel with a `config`) as an open_clip local-dir folder; returns it."""
    check_convertible(model.config)
    state = to_open_clip_state({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    bias = model.logit_bias.item() if model.logit_bias is not None else None
    output.mkdir(parents=True, exist_ok=True)
    (output / CONFIG).write_text(json.dumps(open_clip_config(model.config, bias), indent=2) + "\n")
    save_file(state, output / WEIGHTS)
    return output
