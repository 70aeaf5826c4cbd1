"""Symile: contrastive learning over any number of modalities with the multilinear inner product.

Saporta et al., "Contrasting with Symile: Simple Model-Agnostic Representation Learning for Unlimited Modalities",
NeurIPS 2024. For modalities m = 1..M with normalised embeddings x^m::

    MIP(x^1_i, ..., x^M_i) = Σ_d Π_m x^m_{i,d}
    L_Symile = 1/M Σ_anchor m  1/N Σ_i −log softmax_c( s · MIP(x^m_i, candidate c) )[positive]

where candidate c is one row of each non-anchor modality and the positive is sample i's own rows. Negatives:

* ``"n"`` (O(N) per row; the default for three or more modalities): each non-anchor modality's rows are
  independently permuted, candidate j takes row π_o(j) of modality o; the diagonal (i, i) is replaced by the true
  positive. As in the paper, a permuted candidate can coincide with the positive, a false negative: it needs all
  M − 1 permutations to send one column to row i, about 1/N^{M−2} columns per row (1/N for three modalities). With
  two modalities it would be a single permutation, a bijection, which puts the positive among the negatives in
  almost every row (a fraction 1 − 1/N); two modalities therefore refuse ``"n"``.
* ``"n_squared"`` (O(N^{M−1}) per row; the default for two modalities, where it is CLIP's InfoNCE): every
  combination of non-anchor rows is a candidate.

Missing modalities: by default a row lacking any of the loss's modalities is left out of the term, so with a
missing rate p per modality only (1 − p)^M of the rows train. Symile-M3 keeps them: a missing input becomes a
representation the model learns (the training-set mean image or audio clip with a missingness indicator, a
``[MISSING]`` text token), and the loss itself needs no parameters. mmcl does this at the model: the tower option
``missing: learned`` gives the modality a learned missing-input embedding, and rows with it stay in this term
(see :mod:`mmcl.models.multimodal` and :mod:`mmcl.losses.rows`). Such rows add pairwise information only; where the
signal is purely three-way (the XOR experiment at p̂ = 1, ``benchmarks/symile_xor.py --missing``) they add none.

Across ranks, local anchor rows meet candidates built from the gathered rows, and the permutations are drawn on
rank 0 and broadcast so every rank builds the same candidate set as one process would.

Randomness: the ``"n"`` permutations come from torch's global generator (the CUDA one for CUDA tensors), one draw
per call. Under gradient accumulation the loss is evaluated once per micro-batch pass, always over the whole
accumulated batch; :mod:`mmcl.training.accumulation` starts each of those evaluations from the same RNG state, so
an optimiser step draws its permutations once (those of one batch k times larger) and the k passes differentiate
one and the same loss. A caller that evaluates the loss several times for one gradient must likewise fix the state
(e.g. ``torch.set_rng_state``) before each evaluation; ``"n_squared"`` draws nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmcl.losses import distributed
from mmcl.losses.registry import LossOptionError, register_loss
from mmcl.losses.rows import Rows, check_modalities, info_nce, select

NEGATIVE_SAMPLING = ("n", "n_squared")


def _product(tensors: list[Tensor]) -> Tensor:
    out = tensors[0]
    for t in tensors[1:]:
        out = out * t
    return out


def candidates_n(rows: Rows, others: list[str]) -> tuple[Tensor, Tensor]:
    """(candidate products [N, D], positive index per local row) for O(N) negative sampling, diagonal not yet set."""
    n = rows.n_global
    shuffled = [rows.glob[o][distributed.shared_permutation(n, rows.positives.device)] for o in others]
    return _product(shuffled), rows.positives


def candidates_n_squared(rows: Rows, others: list[str]) -> tuple[Tensor, Tensor]:
    """(all N^{M−1} combinations of non-anchor rows [N^{M−1}, D], positive index per local row)."""
    n = rows.n_global
    combined = rows.glob[others[0]]
    positives = rows.positives
    for o in others[1:]:
        # Row (j, k) of the new set is old row j times row k of o, at index j·N + k.
        combined = (combined[:, None, :] * rows.glob[o][None, :, :]).reshape(-1, combined.shape[1])
        positives = positives * n + rows.positives
    return combined, positives


@register_loss("symile")
class SymileLoss(nn.Module):
    """Symile over the listed modalities; ``{"symile/<m1>-<m2>-...": loss}``."""

    def __init__(self, modalities: Sequence[str] = ("image", "text", "audio"), negative_sampling: str | None = None):
        super().__init__()
        self.modalities = check_modalities("symile", modalities)
        if negative_sampling is None:
            negative_sampling = "n_squared" if len(self.modalities) == 2 else "n"
        if negative_sampling not in NEGATIVE_SAMPLING:
            raise LossOptionError(
                f"loss 'symile': negative_sampling {negative_sampling!r} is not one of {', '.join(NEGATIVE_SAMPLING)}"
            )
        if negative_sampling == "n" and len(self.modalities) == 2:
            raise LossOptionError(
                "loss 'symile': negative_sampling 'n' needs three or more modalities: with two, its one permutation "
                "puts each row's positive among its negatives; use 'n_squared' (CLIP's InfoNCE for two modalities)")
        self.negative_sampling = negative_sampling

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        rows = select(outputs, batch, self.modalities)
        scale = outputs["logit_scale"]
        positive_mip = _product([rows.local[m] for m in self.modalities]).sum(1)
        total = positive_mip.new_zeros(())
        for anchor in self.modalities:
            others = [m for m in self.modalities if m != anchor]
            if self.negative_sampling == "n":
                candidates, positives = candidates_n(rows, others)
                logits = rows.local[anchor] @ candidates.T
                is_positive = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, positives[:, None], True)
                logits = torch.where(is_positive, positive_mip[:, None], logits)
            else:
                candidates, positives = candidates_n_squared(rows, others)
                logits = rows.local[anchor] @ candidates.T
            total = total + info_nce(scale * logits, positives).sum()
        return {f"symile/{'-'.join(self.modalities)}": total / len(self.modalities) * rows.share}
