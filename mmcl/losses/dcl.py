"""Decoupled contrastive learning: InfoNCE without the positive in the denominator (DCL), optionally weighted (DCLW).

Yeh et al., "Decoupled Contrastive Learning", ECCV 2022, Eq. (6), with the two views being two modalities u, v.
With s = logit_scale = 1/τ, per direction (u→v shown; v→u swaps the roles; the loss is the mean of both)::

    L_DCL  = 1/N Σ_i [ −w_i s⟨u_i, v_i⟩ + log Σ_{j≠i} ( exp(s⟨u_i, u_j⟩) + exp(s⟨u_i, v_j⟩) ) ]

with w_i = 1 (DCL) or, for DCLW, the negative von Mises-Fisher weight w_i = 2 − N · softmax_k(⟨u_k, v_k⟩/σ)[i]
(σ = 0.5 by default). The negatives are every other row of *both* views, within and across modalities, in one
log-sum, as in Eq. (6) and the authors' code (lightly's `DCLLoss` instead adds two separate log-sums, one per view:
not the paper's equation).

Option ``negatives``: ``within_and_cross`` (default) is Eq. (6); ``cross_modal`` drops the within-modality terms
⟨u_i, u_j⟩, giving CLIP's InfoNCE with the positive removed from its denominator (not the paper's loss; for
image-text pairs it keeps the loss a function of cross-modal similarities only, as CLIP's is).

DCLW's weights are detached (as lightly's `negative_mises_fisher_weights` does; the authors' code lets gradient
through them): the paper introduces w as a weighting of the positive term, and a gradient through the softmax
would also push the batch's positive similarities apart from one another, a term Eq. (6) does not contain. Across
ranks the softmax runs over the positives of the whole global batch, so the weights equal the one-process ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from mmcl.losses.registry import LossOptionError, register_loss
from mmcl.losses.clip import symmetric_info_nce
from mmcl.losses.rows import PairLoss, Rows, select

NEGATIVES = ("within_and_cross", "cross_modal")


@register_loss("dcl")
class DclLoss(PairLoss):
    """Decoupled contrastive loss; ``{"dcl/<a>-<b>": loss}``."""

    name = "dcl"
    sigma: float | None = None

    def __init__(self, modalities: Sequence[str] = ("image", "text"),
                 negatives: Literal["within_and_cross", "cross_modal"] = "within_and_cross"):
        super().__init__(modalities)
        if negatives not in NEGATIVES:
            raise LossOptionError(f"loss {self.name!r}: negatives must be one of {', '.join(NEGATIVES)}, "
                                  f"got {negatives!r}")
        self.negatives = negatives

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
        return symmetric_info_nce(rows, outputs["logit_scale"], a, b, decoupled=True,
                                  positive_weight=self.positive_weights(rows),
                                  within_negatives=self.negatives == "within_and_cross")


@register_loss("dclw")
class DclwLoss(DclLoss):
    """DCL with negative von Mises-Fisher positive weights; ``{"dclw/<a>-<b>": loss}``."""

    name = "dclw"

    def __init__(self, modalities: Sequence[str] = ("image", "text"), sigma: float = 0.5,
                 negatives: Literal["within_and_cross", "cross_modal"] = "within_and_cross"):
        super().__init__(modalities, negatives)
        self.sigma = sigma
