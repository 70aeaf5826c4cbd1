"""Alignment and uniformity on the hypersphere, and the CUA / CUAXU objectives built from them.

Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on the
Hypersphere", ICML 2020::

    L_align(u, v) = E_i ‖u_i − v_i‖²                       (α = 2)
    L_unif(x)     = log E_{i≠j} exp(−t ‖x_i − x_j‖²)        (t = 2)

Fahim, Murphy & Fyshe, "It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap", 2024::

    CUA   = L_CLIP + L_align(u, v) + ½ (L_unif(u) + L_unif(v))
    CUAXU = CUA + L_xunif(u, v),   L_xunif = log E_{i≠j} exp(−t ‖u_i − v_j‖²)

each component with a configurable weight. L_unif is the log of a global mean, not a mean of per-row terms, so
across ranks each rank sums its rows' exponentials, the sums are all-reduced with gradient and every rank returns
the same global value (which keeps the invariant of :mod:`mmcl.losses.distributed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmcl.losses import distributed
from mmcl.losses.clip import clip_loss
from mmcl.losses.registry import register_loss
from mmcl.losses.rows import PairLoss, check_modalities, select


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """‖x_i − y_j‖² for all i, j (via the Gram matrix: no sqrt, so no NaN gradient at zero distance)."""
    gram = x @ y.T
    return (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * gram).clamp_min(0)


def log_mean_exp_off_diagonal(x: Tensor, y: Tensor, positives: Tensor, t: float) -> Tensor:
    """log mean_{i≠j} exp(−t ‖x_i − y_j‖²) over the global batch; x holds local rows, y global ones.

    The exponent lies in [−4t, 0] for unit vectors, so summing the exponentials directly cannot overflow.
    """
    n = y.shape[0]
    if n < 2:
        return x.sum() * 0  # no pairs: a zero that stays in the autograd graph
    kernel = torch.exp(-t * squared_distances(x, y))
    off_diagonal = kernel.scatter(1, positives[:, None], 0.0)
    return torch.log(distributed.all_reduce_sum(off_diagonal.sum()) / (n * (n - 1)))


def uniformity(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, modality: str, t: float) -> Tensor:
    rows = select(outputs, batch, (modality,))
    return log_mean_exp_off_diagonal(rows.local[modality], rows.glob[modality], rows.positives, t)


def alignment(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
    rows = select(outputs, batch, (a, b))
    return (rows.local[a] - rows.local[b]).pow(2).sum() * rows.share


def cross_uniformity(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str, t: float) -> Tensor:
    rows = select(outputs, batch, (a, b))
    return log_mean_exp_off_diagonal(rows.local[a], rows.glob[b], rows.positives, t)


@register_loss("uniformity")
class UniformityLoss(nn.Module):
    """L_unif of each listed modality; ``{"uniformity/<m>": value}``."""

    def __init__(self, modalities: Sequence[str] = ("image", "text"), t: float = 2.0):
        super().__init__()
        self.modalities = check_modalities("uniformity", modalities, at_least=1)
        self.t = t

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        return {f"uniformity/{m}": uniformity(outputs, batch, m, self.t) for m in self.modalities}


@register_loss("alignment")
class AlignmentLoss(PairLoss):
    """L_align between two modalities; ``{"alignment/<a>-<b>": value}``."""

    name = "alignment"

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
        return alignment(outputs, batch, a, b)


class ContrastiveGapLoss(nn.Module):
    """CUA (``cross_uniformity_weight`` = 0) or CUAXU; terms ``<name>/clip``, ``/align``, ``/unif-<m>``, ``/xunif``.

    The terms are already multiplied by their weights, so they sum to the loss.
    """

    def __init__(self, name: str, modalities: Sequence[str], align_weight: float, uniformity_weight: float,
                 cross_uniformity_weight: float, t: float):
        super().__init__()
        self.name = name
        self.modalities = check_modalities(name, modalities, count=2)
        self.align_weight = align_weight
        self.uniformity_weight = uniformity_weight
        self.cross_uniformity_weight = cross_uniformity_weight
        self.t = t

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        a, b = self.modalities
        terms = {
            f"{self.name}/clip": clip_loss(outputs, batch, a, b),
            f"{self.name}/align": self.align_weight * alignment(outputs, batch, a, b),
        }
        for m in (a, b):
            terms[f"{self.name}/unif-{m}"] = self.uniformity_weight / 2 * uniformity(outputs, batch, m, self.t)
        if self.cross_uniformity_weight:
            terms[f"{self.name}/xunif"] = self.cross_uniformity_weight * cross_uniformity(outputs, batch, a, b, self.t)
        return terms


@register_loss("cua")
def cua(modalities: Sequence[str] = ("image", "text"), align_weight: float = 1.0, uniformity_weight: float = 1.0,
        t: float = 2.0) -> ContrastiveGapLoss:
    """CLIP + alignment + uniformity."""
    return ContrastiveGapLoss("cua", modalities, align_weight, uniformity_weight, 0.0, t)


@register_loss("cuaxu")
def cuaxu(modalities: Sequence[str] = ("image", "text"), align_weight: float = 1.0, uniformity_weight: float = 1.0,
          cross_uniformity_weight: float = 1.0, t: float = 2.0) -> ContrastiveGapLoss:
    """CUA + cross-modal uniformity."""
    return ContrastiveGapLoss("cuaxu", modalities, align_weight, uniformity_weight, cross_uniformity_weight, t)
