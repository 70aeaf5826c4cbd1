"""Decoupled contrastive learning: InfoNCE without the positive in the denominator (DCL), optionally weighted (DCLW).

Yeh et al., "Decoupled Contrastive Learning", ECCV 2022. With s_ij = ⟨u_i, v_j⟩ and 1/τ = logit_scale, per
direction (u→v shown; v→u swaps the roles; the loss is the mean of both)::

    L_DCL  = 1/N Σ_i [ −s_ii/τ + log Σ_{j≠i} exp(s_ij/τ) ]
    L_DCLW = 1/N Σ_i [ −w_i s_ii/τ + log Σ_{j≠i} exp(s_ij/τ) ],   w_i = 2 − N · softmax_k(s_kk/σ)[i]

with σ = 0.5 by default and w detached (it reweights, it is not optimised). Across ranks the softmax runs over the
positives of the whole global batch, so the weights equal the one-process ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mmcl.losses.registry import register_loss
from mmcl.losses.clip import symmetric_info_nce
from mmcl.losses.rows import PairLoss, Rows, select


@register_loss("dcl")
class DclLoss(PairLoss):
    """Decoupled contrastive loss; ``{"dcl/<a>-<b>": loss}``."""

    name = "dcl"
    sigma: float | None = None

    def positive_weights(self, rows: Rows) -> Tensor | None:
        if self.sigma is None:
            return None
        a, b = self.modalities
        with torch.no_grad():
            positives = (rows.glob[a] * rows.glob[b]).sum(1)
            weights = 2 - rows.n_global * torch.softmax(positives / self.sigma, dim=0)
        return weights[rows.positives]

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
        rows = select(outputs, batch, (a, b))
        if rows.n_global < 2:  # no negatives at all: the decoupled denominator would be log 0
            return rows.zero()
        weights = self.positive_weights(rows)
        return symmetric_info_nce(rows, outputs["logit_scale"], a, b, decoupled=True, positive_weight=weights)


@register_loss("dclw")
class DclwLoss(DclLoss):
    """DCL with von Mises-Fisher positive weights; ``{"dclw/<a>-<b>": loss}``."""

    name = "dclw"

    def __init__(self, modalities: Sequence[str] = ("image", "text"), sigma: float = 0.5):
        super().__init__(modalities)
        self.sigma = sigma
