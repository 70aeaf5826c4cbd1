"""The moving average of a run's weights (train.ema): updated after optimiser steps, checkpointed, resumed.

timm's ModelEmaV3 does the averaging. Its decay at update n follows the update count passed in, not a counter
of its own, so a resumed run that passes the same count and starts from the saved average continues exactly.
The average is written as an mmcl checkpoint folder (`step-N/ema/`: safetensors and model.yaml), which every
command that reads a checkpoint can load.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from timm.utils.model_ema import ModelEmaV3

from mmcl.models import save_model
from mmcl.training.config import EmaConfig

log = logging.getLogger("mmcl.train")

FOLDER = "ema"  # inside a checkpoint's step folder, beside model/


class WeightAverage:
    """An EMA of `model`'s parameters and buffers, updated every `cfg.every` optimiser steps."""

    def __init__(self, model: torch.nn.Module, cfg: EmaConfig):
        self.cfg = cfg
        self.ema = ModelEmaV3(model, decay=cfg.decay, use_warmup=cfg.warmup, warmup_power=cfg.warmup_power)
        self.ema.module.config = model.config  # the average is the same architecture, saved with the same yaml
        for module in self.ema.module.modules():  # a compiled tower's copy would call the original's forward
            module._compiled_call_impl = None

    @property
    def module(self) -> torch.nn.Module:
        return self.ema.module

    def update(self, model: torch.nn.Module, step: int) -> None:
        """After optimiser step `step` (1-based)."""
        if step % self.cfg.every == 0:
            # ModelEmaV3's decay is 0 at update 1 (the average starts as a copy), then ramps up from update 2.
            self.ema.update(model, step=step // self.cfg.every)

    def save(self, folder: Path) -> None:
        save_model(self.module, folder / FOLDER)

    def load(self, folder: Path, model: torch.nn.Module) -> None:
        """The average saved in checkpoint `folder`; a checkpoint without one (EMA switched on at resume) starts
        the average from `model`'s weights."""
        weights = folder / FOLDER / "model.safetensors"
        if not weights.is_file():
            log.warning("%s holds no moving average (train.ema was off): the average starts from its weights", folder)
            self.module.load_state_dict(model.state_dict())
            return
        self.module.load_state_dict(load_file(weights, device=str(next(self.module.parameters()).device)))
