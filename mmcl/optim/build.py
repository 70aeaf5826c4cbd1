"""AdamW with CLIP-style weight-decay exclusions, and step-based learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from mmcl.optim.config import OptimConfig

_NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def _decays(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """open_clip's rule (open_clip_train/main.py: no decay where `p.ndim < 2` or the name holds bn/ln/bias/
    logit_scale), by module type rather than by name, so that any encoder's norms are found."""
    if param.ndim < 2 or isinstance(module, _NO_DECAY_MODULES):
        return False
    leaf = name.rsplit(".", 1)[-1]  # parameters held directly by a module (the temperature, a bias) go by name
    return not (leaf.startswith("logit_") or leaf.startswith("bias"))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                (decay if _decays(module, name, param) else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=cfg.fused)


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
