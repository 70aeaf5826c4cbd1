"""Multi-view contrastive objectives MV-InfoNCE and MV-DHEL, with the modalities of a sample as its views.

Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning", 2025. For instance i with views
z_i^1..z_i^V (here: its modalities), s = logit_scale (= 1/τ), and N instances::

    MV-InfoNCE = −1/N Σ_i log [ Σ_{l≠m} exp(s⟨z_i^l, z_i^m⟩) / Σ_l Σ_{(m,j)≠(l,i)} exp(s⟨z_i^l, z_j^m⟩) ]
    MV-DHEL    = −1/N Σ_i log [ Σ_{l<m} exp(s⟨z_i^l, z_i^m⟩) / Π_l Σ_{j≠i} exp(s⟨z_i^l, z_j^l⟩) ]

MV-InfoNCE contrasts one instance's views against every other (view, instance); MV-DHEL decouples uniformity per
view. Everything is evaluated as logsumexp in log space: the reference implementation multiplies raw sums of
exponentials (the product over views in MV-DHEL), which overflows at large scales or with many views.
Instances are the rows having every listed modality; across ranks, local instances meet gathered columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, permutations
from typing import Any

import torch
from torch import Tensor, nn

from mmcl.losses.registry import register_loss
from mmcl.losses.rows import Rows, check_modalities, exclude, output_modalities, select


def log_positive_sum(rows: Rows, scale: Tensor, pairs: list[tuple[str, str]]) -> Tensor:
    """log Σ_{(l, m) in pairs} exp(s⟨z_i^l, z_i^m⟩) per local instance; [n]."""
    agreement = torch.stack([(rows.local[l] * rows.local[m]).sum(1) for l, m in pairs], dim=1)
    return torch.logsumexp(scale * agreement, dim=1)


def mv_infonce(rows: Rows, scale: Tensor, views: list[str]) -> Tensor:
    columns = torch.cat([rows.glob[m] for m in views])  # block m holds view m of every instance
    n = rows.n_global
    # Per view l: all (view, instance) columns except (l, i) itself, at block l, offset p_i.
    negatives = torch.cat(
        [exclude(scale * rows.local[l] @ columns.T, rows.positives + k * n) for k, l in enumerate(views)], dim=1
    )
    return torch.logsumexp(negatives, dim=1) - log_positive_sum(rows, scale, list(permutations(views, 2)))


def mv_dhel(rows: Rows, scale: Tensor, views: list[str]) -> Tensor:
    if rows.n_global < 2:  # no other instance in any view: the per-view denominators would be log 0
        return rows.zero()
    log_negatives = sum(
        torch.logsumexp(exclude(scale * rows.local[l] @ rows.glob[l].T, rows.positives), dim=1) for l in views
    )
    return log_negatives - log_positive_sum(rows, scale, list(combinations(views, 2)))


class MultiViewLoss(nn.Module):
    """MV-InfoNCE or MV-DHEL over ``modalities`` (default: every modality in the outputs); ``{"<name>/<views>": loss}``."""

    def __init__(self, name: str, per_instance, modalities: Sequence[str] | None):
        super().__init__()
        self.name = name
        self.per_instance = per_instance
        self.modalities = None if modalities is None else check_modalities(name, modalities)

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        views = self.modalities or check_modalities(self.name, output_modalities(outputs))
        rows = select(outputs, batch, views)
        loss = self.per_instance(rows, outputs["logit_scale"], views).sum() * rows.share
        return {f"{self.name}/{'-'.join(views)}": loss}


@register_loss("mv_infonce")
def mv_infonce_loss(modalities: Sequence[str] | None = None) -> MultiViewLoss:
    """Multi-view InfoNCE."""
    return MultiViewLoss("mv_infonce", mv_infonce, modalities)


@register_loss("mv_dhel")
def mv_dhel_loss(modalities: Sequence[str] | None = None) -> MultiViewLoss:
    """Multi-view decoupled hyperspherical energy loss."""
    return MultiViewLoss("mv_dhel", mv_dhel, modalities)
