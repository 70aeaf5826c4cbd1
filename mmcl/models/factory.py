"""`create_model(name_or_config)`: named model configs (YAML files beside this module) to a ready model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mmcl.errors import UserError
from mmcl.models.catalog import list_models, resolve_model_config  # noqa: F401  (re-exported: the factory's API)
from mmcl.models.config import CLIP_LOGIT_SCALE_INIT
from mmcl.models.locking import lock
from mmcl.models.multimodal import MultimodalModel
from mmcl.models.towers import Tower, build_tower
from mmcl.models.weights import load_weights


# Where each tower kind's weights sit in an open_clip checkpoint; other kinds read whole state dicts.
_DEFAULT_PREFIX = {"open_clip_vision": "visual.", "open_clip_text": "text."}


@dataclass
class ModalityTransforms:
    """Per-modality sample transforms for training (augmenting) and evaluation (deterministic)."""

    train: dict[str, Callable] = field(default_factory=dict)
    eval: dict[str, Callable] = field(default_factory=dict)


def _prepare_tower(modality: str, tower_cfg, embed_dim: int) -> Tower:
    """Build, then load initial weights (before locking, which freezes BatchNorm), lock, checkpoint."""
    try:
        tower = build_tower(tower_cfg, embed_dim)
    except UserError as err:
        raise UserError(f"{modality} tower: {err}") from None
    if tower_cfg.weights is not None:
        w = tower_cfg.weights
        prefix = w.prefix if w.prefix is not None else _DEFAULT_PREFIX.get(tower_cfg.type, "")
        try:
            load_weights(tower.get_submodule(tower.weights_root), w.path, prefix, w.strict)
        except UserError as err:
            raise UserError(f"{modality} tower: {err}") from None
    if tower_cfg.locked:
        lock(tower, tower_cfg.unlocked_layers)
    if tower_cfg.grad_checkpointing:
        tower.set_grad_checkpointing(True)
    return tower


def create_model(name_or_config) -> tuple[MultimodalModel, ModalityTransforms, Callable | None]:
    """Build a model; returns (model, per-modality transforms, tokenizer or None if no text tower)."""
    cfg = resolve_model_config(name_or_config)
    if cfg.logit_scale_init is None:  # no objective chose one: CLIP's, written down so that a checkpoint says it
        cfg = cfg.model_copy(update={"logit_scale_init": CLIP_LOGIT_SCALE_INIT})
    towers = {m: _prepare_tower(m, tower_cfg, cfg.embed_dim) for m, tower_cfg in cfg.towers.items()}
    learned_missing = [m for m, tower_cfg in cfg.towers.items() if tower_cfg.missing == "learned"]
    model = MultimodalModel(towers, cfg.logit_scale_init, cfg.logit_scale_max, cfg.logit_bias_init,
                            learned_missing=learned_missing, embed_dim=cfg.embed_dim)
    model.config = cfg
    if cfg.open_clip is not None and cfg.open_clip.weights is not None:
        from mmcl.interop.open_clip_import import load_open_clip_checkpoint

        load_open_clip_checkpoint(model, cfg.open_clip.weights)
    transforms = ModalityTransforms(
        train={m: t.train_transform for m, t in towers.items() if t.train_transform is not None},
        eval={m: t.eval_transform for m, t in towers.items() if t.eval_transform is not None},
    )
    tokenizer = next((t.tokenizer for t in towers.values() if t.tokenizer is not None), None)
    return model, transforms, tokenizer
