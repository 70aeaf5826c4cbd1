"""The training task: the model and the objective, and what one optimiser step does to them.

As in open_clip's `TrainingTask`: the recipe hands the task micro-batches and gets back the loss; the task owns
the accumulating forward/backward (`mmcl.training.accumulation`), what follows an optimiser step (the temperature
clamp; an EMA update would go here too) and which weights evaluation and inference use. A variant (a frozen
reference model for cleaning or distillation, an EMA) is a small subclass.
"""

from __future__ import annotations

from typing import Callable

import torch

from mmcl.training.accumulation import forward_backward


class ContrastiveTask:
    """`model` is what the optimiser trains (wrapped by DDP/FSDP in a distributed run), `unwrapped` the plain
    multimodal model inside it."""

    def __init__(self, model: torch.nn.Module, unwrapped: torch.nn.Module, objective: torch.nn.Module):
        self.model = model
        self.unwrapped = unwrapped
        self.objective = objective

    def training_step(self, micro_batches: list[dict], backward: Callable, no_sync: Callable,
                      check: Callable[[torch.Tensor, dict], bool]):
        """Forward and backward over the step's micro-batches (with the negatives of all of them); returns
        (total, terms, outputs). `check` sees the loss before any backward and returns False to skip."""
        self.model.train()
        return forward_backward(self.model, self.objective, micro_batches, backward, no_sync, check=check)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Keep the temperature parameter itself inside its bound, as CLIP does."""
        self.unwrapped.logit_scale.clamp_(max=self.unwrapped.log_scale_max)

    def eval_model(self) -> torch.nn.Module:
        """The model evaluation embeds with."""
        return self.unwrapped

    def state_dict_for_inference(self, get_state_dict: Callable) -> dict[str, torch.Tensor]:
        """The weights a checkpoint's `model/` folder holds; `get_state_dict(model)` gathers them (from every
        process's shard under FSDP, so every process calls this)."""
        return get_state_dict(self.model)
