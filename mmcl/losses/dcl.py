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
from torch import Tensor, nn

from mmcl.losses.registry import register_loss
from mmcl.losses.rows import Rows, check_modalities, info_nce, select


class DecoupledLoss(nn.Module):
    """DCL (``sigma`` None) or DCLW; ``{"<name>/<a>-<b>": loss}``."""

    def __init__(self, name: str, modalities: Sequence[str], sigma: float | None):
        super().__init__()
        self.name = name
        self.modalities = check_modalities(name, modalities, count=2)
        self.sigma = sigma

    def positive_weights(self, rows: Rows) -> Tensor | None:
        if self.sigma is None:
            return None
        a, b = self.modalities
        with torch.no_grad():
            positives = (rows.glob[a] * rows.glob[b]).sum(1)
            weights = 2 - rows.n_global * torch.softmax(positives / self.sigma, dim=0)
        return weights[rows.positives]

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        a, b = self.modalities
        rows = select(outputs, batch, (a, b))
        if rows.n_global < 2:  # no negatives at all: the decoupled denominator would be log 0
            return {f"{self.name}/{a}-{b}": rows.zero()}
        scale = outputs["logit_scale"]
        weights = self.positive_weights(rows)
        directions = [
            info_nce(scale * rows.local[x] @ rows.glob[y].T, rows.positives, decoupled=True, positive_weight=weights)
            for x, y in ((a, b), (b, a))
        ]
        return {f"{self.name}/{a}-{b}": (directions[0].sum() + directions[1].sum()) / 2 * rows.share}


@register_loss("dcl")
def dcl(modalities: Sequence[str] = ("image", "text")) -> DecoupledLoss:
    """Decoupled contrastive loss."""
    return DecoupledLoss("dcl", modalities, None)


@register_loss("dclw")
def dclw(modalities: Sequence[str] = ("image", "text"), sigma: float = 0.5) -> DecoupledLoss:
    """Decoupled contrastive loss with von Mises-Fisher positive weighting."""
    return DecoupledLoss("dclw", modalities, sigma)
