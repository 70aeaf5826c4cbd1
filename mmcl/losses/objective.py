"""The training objective: a weighted sum of named loss terms, as listed in the config.

    total = Σ_k weight_k · Σ_t term_{k,t}

where loss k returns the named terms term_{k,t} (whose sum is that loss). Every term is also returned unweighted
for logging under the name its loss gave it.

The losses run in float32 even under mixed precision (autocast off, half-precision embeddings upcast): logits at
scale 100 and a logsumexp over thousands of columns lose too many digits in float16/bfloat16.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmcl.errors import UserError
from mmcl.losses.config import LossTermConfig
from mmcl.losses.registry import create_loss
from mmcl.models.config import ModelConfig


def model_for_objective(model: ModelConfig, terms: list[LossTermConfig]) -> ModelConfig:
    """The model config with the temperature and bias it leaves unset (null) taken from the objective: the values a
    loss asks to start from (SigLIP's `initial_logit_scale`, `initial_logit_bias`), else none (CLIP's defaults).
    Explicit values are kept."""
    chosen = {}
    for loss in Objective(terms).losses:
        for field, attribute in (("logit_scale_init", "initial_logit_scale"),
                                 ("logit_bias_init", "initial_logit_bias")):
            if getattr(model, field) is None and hasattr(loss, attribute):
                chosen.setdefault(field, getattr(loss, attribute))
    return model.model_copy(update=chosen)


class Objective(nn.Module):
    """Builds each configured loss; ``forward(outputs, batch)`` returns ``(total, terms)``."""

    def __init__(self, terms: list[LossTermConfig]):
        super().__init__()
        if not terms:
            raise UserError("the objective has no loss terms; list at least one, e.g. - name: clip")
        self.losses = nn.ModuleList(create_loss(term.name, **term.options) for term in terms)
        self.weights = [term.weight for term in terms]

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = {k: _at_least_float32(v) for k, v in outputs.items()}
        device_type = next(v for v in outputs.values() if isinstance(v, Tensor)).device.type
        total: Tensor | float = 0.0
        logged: dict[str, Tensor] = {}
        with torch.autocast(device_type, enabled=False):
            for index, (loss, weight) in enumerate(zip(self.losses, self.weights)):
                for name, value in loss(outputs, batch).items():
                    # Two terms with one name (say two clip terms differing only in options) stay distinct in logs.
                    logged[name if name not in logged else f"{name}[{index}]"] = value
                    total = total + weight * value
        return total, logged


def _at_least_float32(value: Any) -> Any:
    if isinstance(value, Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    return value
