"""AdamW with CLIP-style weight-decay exclusions, and step-based learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmcl.errors import UserError
from mmcl.models.locking import layer_groups
from mmcl.optim.config import OptimConfig

_NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def _decays(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """open_clip's rule (open_clip_train/main.py: no decay where `p.ndim < 2` or the name holds bn/ln/bias/
    logit_scale), by module type rather than by name, so that any encoder's norms are found."""
    if param.ndim < 2 or isinstance(module, _NO_DECAY_MODULES):
        return False
    leaf = name.rsplit(".", 1)[-1]  # parameters held directly by a module (the temperature, a bias) go by name
    return not (leaf.startswith("logit_") or leaf.startswith("bias"))


TEMPERATURE = "temperature"  # the lr_multipliers key of the logit scale and bias
_TEMPERATURE_PARAMS = ("logit_scale", "logit_bias")


def lr_scales(model: nn.Module, multipliers: dict[str, float], layer_decay: dict[str, float]) -> dict[str, float]:
    """Each parameter's multiple of the peak learning rate (names absent: 1)."""
    towers = getattr(model, "towers", {})
    unknown = sorted(set(multipliers) - set(towers) - {TEMPERATURE}) + sorted(set(layer_decay) - set(towers))
    if unknown:
        raise UserError(f"optim.lr_multipliers / optim.layer_decay name {unknown}, which are neither towers of the "
                        f"model ({', '.join(towers)}) nor {TEMPERATURE!r}")
    scales = {name: multipliers.get(TEMPERATURE, 1.0) for name in _TEMPERATURE_PARAMS}
    for modality, tower in towers.items():
        rate = multipliers.get(modality, 1.0)
        scales[f"missing.{modality}"] = rate  # a learned missing-input embedding trains with its tower
        groups = layer_groups(tower) if modality in layer_decay else [[n for n, _ in tower.named_parameters()]]
        for index, names in enumerate(groups):
            depth = len(groups) - 1 - index  # 0 for the head
            for name in names:
                scales[f"towers.{modality}.{name}"] = rate * layer_decay.get(modality, 1.0) ** depth
    return scales


def param_groups(model: nn.Module, weight_decay: float, multipliers: dict[str, float] | None = None,
                 layer_decay: dict[str, float] | None = None) -> list[dict]:
    """AdamW groups: decayed or not, times each distinct learning-rate scale (`lr_scale`; 1 without multipliers
    or layer decay, giving the two groups [decayed, not decayed])."""
    scales = lr_scales(model, multipliers or {}, layer_decay or {})
    groups: dict[tuple[bool, float], dict] = {(True, 1.0): {"params": [], "weight_decay": weight_decay, "lr_scale": 1.0},
                                              (False, 1.0): {"params": [], "weight_decay": 0.0, "lr_scale": 1.0}}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            decays = _decays(module, name, param)
            scale = scales.get(f"{module_name}.{name}" if module_name else name, 1.0)
            group = groups.setdefault((decays, scale), {"params": [], "weight_decay": weight_decay if decays else 0.0,
                                                        "lr_scale": scale})
            group["params"].append(param)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.lr_multipliers, cfg.layer_decay)
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]  # the schedule then scales every group's own peak rate
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=cfg.fused)


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Multiplier of the peak lr at `step` (0-based) of `total_steps`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "constant_cooldown":
        cooldown_start = total_steps - cfg.cooldown_steps
        return 1.0 if step < cooldown_start else max(0.0, (total_steps - step) / max(1, cfg.cooldown_steps))
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, cfg))
