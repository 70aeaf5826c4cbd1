"""CWCL: contrastive loss with continuous (soft) positives weighted by a frozen tower's similarities.

Srinivasa et al., "CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive Loss", NeurIPS 2023.
With p_i from the frozen tower (modality U), q_i from the trained one (modality V), s = logit_scale (= 1/τ)::

    w_ij    = (⟨p_i, p_j⟩ + 1) / 2
    L_{U→V} = −1/N Σ_i (1 / Σ_j w_ij) Σ_j w_ij log softmax_j(s⟨p_i, q_j⟩)
    L_{V→U} = −1/N Σ_i (1 / Σ_j w_ij) Σ_j w_ij log softmax_j(s⟨q_i, p_j⟩)
    L_CWCL  = L_{U→V} + L_{V→U}

The sum of the two directions is twice the scale of mmcl's ``clip`` (which averages them): with w = identity this
loss equals 2 × clip. The equations are the method section's as read when this was written; their numbers are
not quoted because the paper's text was not at hand to check them again. ``tests/test_losses_cwcl.py`` works a
2-row example by hand.

Both directions take their weights from the frozen tower: its intra-modal similarities are the knowledge being
transferred, while the trained tower's are what is being learned. The weights are targets, so they are detached.
Across ranks, weights and logits of local rows run over the gathered columns, as in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mmcl.losses.registry import register_loss
from mmcl.losses.rows import PairLoss, select


def soft_cross_entropy(logits: Tensor, weights: Tensor) -> Tensor:
    """Per row, −Σ_j (w_ij / Σ_k w_ik) log softmax_j(logits_ij); [n]."""
    targets = weights / weights.sum(1, keepdim=True)
    return -(targets * torch.log_softmax(logits, dim=1)).sum(1)


@register_loss("cwcl")
class CwclLoss(PairLoss):
    """CWCL with ``modalities = [frozen, trained]``; ``{"cwcl/<frozen>-<trained>": loss}``."""

    name = "cwcl"

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, frozen: str, trained: str) -> Tensor:
        rows = select(outputs, batch, (frozen, trained))
        p, q = rows.local[frozen], rows.local[trained]
        scale = outputs["logit_scale"]
        weights = ((p @ rows.glob[frozen].T + 1) / 2).detach()
        loss = soft_cross_entropy(scale * p @ rows.glob[trained].T, weights).sum()
        loss = loss + soft_cross_entropy(scale * q @ rows.glob[frozen].T, weights).sum()
        return loss * rows.share
