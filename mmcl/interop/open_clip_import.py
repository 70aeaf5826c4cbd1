"""open_clip CLIP models as mmcl models: the architecture from open_clip's config, the weights from its checkpoint.

A model config `open_clip: {name: ViT-B-32, weights: FILE}` becomes an `open_clip_vision` image tower and an
`open_clip_text` text tower with open_clip's own `vision_cfg`, `text_cfg` and `quick_gelu`, its `embed_dim`, and
its logit scale and bias initialisation; the checkpoint then fills both towers, `logit_scale` and `logit_bias`
strictly, with the image position embeddings resized when `image_size` differs (open_clip's resize_pos_embed).
The mapping is the inverse of :mod:`mmcl.interop.open_clip_format`, so importing and exporting give back the
checkpoint's tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mmcl.errors import UserError


def architecture(name: str) -> dict:
    """open_clip's model config by registered name, `local-dir:DIR` (open_clip's own schema: DIR's
    open_clip_config.json, as `mmcl export --format open_clip` writes it) or JSON file path."""
    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"open_clip model config {name}: file not found")
        spec = json.loads(path.read_text())
        return spec.get("model_cfg", spec)  # a local-dir config file nests the model under model_cfg
    import open_clip

    try:
        spec = open_clip.get_model_config(name)
    except FileNotFoundError as err:  # local-dir: without its config file
        raise UserError(f"open_clip model {name}: {err}") from None
    if spec is None:
        raise UserError(f"unknown open_clip model {name!r}; `python -c 'import open_clip; "
                        f"print(open_clip.list_models())'` lists them, or give local-dir:DIR or a model config "
                        f"JSON path")
    return spec


def model_fields(source, given: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields an open_clip architecture sets: embed_dim, towers, logit scale and bias inits."""
    spec = architecture(source.name)
    text = dict(spec.get("text_cfg", {}))
    foreign = sorted(k for k in ("hf_model_name", "hf_tokenizer_name") if text.get(k))
    if foreign:
        raise UserError(f"open_clip model {source.name!r}: its text tower uses Hugging Face {foreign} "
                        f"({', '.join(text[k] for k in foreign)}), which the open_clip_text tower (open_clip's text "
                        "transformer and BPE tokenizer) cannot hold; use an hf_text tower for it")
    vision = dict(spec.get("vision_cfg", {}))
    if source.image_size is not None:
        vision["image_size"] = source.image_size
    quick_gelu = bool(spec.get("quick_gelu", False))
    fields: dict[str, Any] = {"embed_dim": spec["embed_dim"], "towers": {
        "image": {"type": "open_clip_vision", "cfg": vision, "quick_gelu": quick_gelu},
        "text": {"type": "open_clip_text", "cfg": text, "quick_gelu": quick_gelu}}}
    if spec.get("init_logit_scale") is not None:
        fields["logit_scale_init"] = spec["init_logit_scale"]
    if spec.get("init_logit_bias") is not None:
        fields["logit_bias_init"] = spec["init_logit_bias"]
    return fields


def from_open_clip_state(state: dict) -> dict:
    """An open_clip CLIP or CustomTextCLIP state dict under mmcl's names (`logit_*` as mmcl's shape-[1] params)."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("visual."):
            renamed["towers.image.encoder." + key.removeprefix("visual.")] = value
        elif key in ("logit_scale", "logit_bias"):
            renamed[key] = value.reshape(1)
        else:  # CLIP keeps its text transformer's parts at the root, CustomTextCLIP under text.
            renamed["towers.text.encoder." + key.removeprefix("text.")] = value
    return renamed


def load_open_clip_checkpoint(model, path: str) -> None:
    """Fill `model` (built from an `open_clip:` config) from an open_clip checkpoint, strictly."""
    from open_clip.model import resize_pos_embed

    from mmcl.models.weights import read_state_dict

    state = read_state_dict(path)
    resize_pos_embed(state, SimpleNamespace(visual=model.towers["image"].encoder))
    renamed = from_open_clip_state(state)
    if "logit_bias" not in renamed and model.logit_bias is not None:
        # A CLIP checkpoint fine-tuned with a sigmoid loss: the bias starts from the model's init (open_clip: 0).
        renamed["logit_bias"] = model.logit_bias.detach().clone()
    try:
        missing, unexpected = model.load_state_dict(renamed, strict=False)
    except RuntimeError as err:  # a shape mismatch: another architecture
        raise UserError(f"{path}: weights do not fit the open_clip model config: {err}") from None
    if missing or unexpected:
        def names(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        raise UserError(f"{path}: not a checkpoint of this open_clip model: missing {names(missing) or 'none'}; "
                        f"unexpected {names(unexpected) or 'none'}")
