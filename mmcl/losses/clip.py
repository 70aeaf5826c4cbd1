"""Symmetric InfoNCE between two modalities (CLIP), and its sum over several pairs (ImageBind-style).

CLIP: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021.
With L2-normalised u_i, v_i and s = logit_scale (= 1/τ)::

    L_CLIP = 1/(2N) Σ_i [ -log softmax_j(s⟨u_i, v_j⟩)[i]  -log softmax_j(s⟨v_i, u_j⟩)[i] ]

Pairwise: the sum of L_CLIP over every pair of the listed modalities, or over (anchor, m) for every other m
(Girdhar et al., "ImageBind: One Embedding Space To Bind Them All", CVPR 2023, which binds each modality to images).
Each pair uses the rows having both of its modalities. Across ranks, local rows meet gathered columns
(:mod:`mmcl.losses.distributed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from torch import Tensor, nn

from mmcl.losses.registry import LossOptionError, register_loss
from mmcl.losses.rows import PairLoss, Rows, check_modalities, exclude, info_nce, output_modalities, select


def symmetric_info_nce(rows: Rows, scale: Tensor, a: str, b: str, decoupled: bool = False,
                       positive_weight: Tensor | None = None, within_negatives: bool = False) -> Tensor:
    """Mean of the a→b and b→a InfoNCE over the rows (this rank's share of the global mean); see ``info_nce``.

    ``within_negatives``: the anchor's similarities to the other rows of its own modality join the negatives
    (its own row excluded), as in DCL's two-view form."""
    def direction(x: str, y: str) -> Tensor:
        within = exclude(scale * rows.local[x] @ rows.glob[x].T, rows.positives) if within_negatives else None
        return info_nce(scale * rows.local[x] @ rows.glob[y].T, rows.positives, decoupled, positive_weight,
                        within).sum()

    return (direction(a, b) + direction(b, a)) / 2 * rows.share


def clip_loss(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
    """L_CLIP between modalities ``a`` and ``b``."""
    return symmetric_info_nce(select(outputs, batch, (a, b)), outputs["logit_scale"], a, b)


@register_loss("clip")
class ClipLoss(PairLoss):
    """CLIP's symmetric InfoNCE between two modalities; returns ``{"clip/<a>-<b>": loss}``."""

    name = "clip"

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
        return clip_loss(outputs, batch, a, b)


@register_loss("pairwise")
class PairwiseClipLoss(nn.Module):
    """Sum of CLIP losses over modality pairs; one term per pair, ``{"pairwise/<a>-<b>": loss}``.

    ``modalities``: the modalities to pair (default: every modality in the model's outputs).
    ``anchor``: if set, only pairs (anchor, m) are used (ImageBind); otherwise all pairs.
    """

    def __init__(self, modalities: Sequence[str] | None = None, anchor: str | None = None):
        super().__init__()
        self.modalities = None if modalities is None else check_modalities("pairwise", modalities)
        if anchor is not None and self.modalities is not None and anchor not in self.modalities:
            raise LossOptionError(f"loss 'pairwise': anchor {anchor!r} is not among modalities {self.modalities}")
        self.anchor = anchor

    def pairs(self, outputs: Mapping[str, Tensor]) -> list[tuple[str, str]]:
        names = self.modalities or output_modalities(outputs)
        if self.anchor is not None:
            return [(self.anchor, m) for m in names if m != self.anchor]
        return list(combinations(names, 2))

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        return {f"pairwise/{a}-{b}": clip_loss(outputs, batch, a, b) for a, b in self.pairs(outputs)}
