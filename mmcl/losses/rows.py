"""Shared pieces of every loss: which rows take part, local rows against global columns, the InfoNCE row loss.

Masks: a term that needs modalities M uses exactly the rows whose ``batch["<m>_mask"]`` is true for every m in M
(no mask key means every row has that modality). Rows are *selected*, not zero-weighted, so padding embeddings
never enter a logit, a normaliser or a negative set, and their gradient is exactly zero.

Learned stand-ins (tower option ``missing: learned``, Symile-M3's handling): where the model output holds
``"<m>_stand_in"``, a row lacking m takes part with the model's learned missing-m embedding, provided at least one
of the term's modalities is real in that row: a row made only of stand-ins carries no information (and a
one-modality term such as ``uniformity`` keeps using real rows only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mmcl.data.views import is_view_key
from mmcl.losses import distributed
from mmcl.losses.registry import LossOptionError

# Entries of the model's output dict that are not modality embeddings.
SCALAR_KEYS = ("logit_scale", "logit_bias")


def output_modalities(outputs: Mapping[str, Any]) -> list[str]:
    """The modality names present in a model output dict, in their order there (second views are not modalities)."""
    return [k for k, v in outputs.items()
            if k not in SCALAR_KEYS and not is_view_key(k) and isinstance(v, Tensor) and v.dim() == 2]


def check_modalities(loss: str, modalities: Sequence[str], count: int | None = None, at_least: int = 2) -> list[str]:
    """Validate a ``modalities`` option: distinct names, exactly ``count`` of them or at least ``at_least``."""
    names = list(modalities) if not isinstance(modalities, str) else [modalities]
    if len(set(names)) != len(names):
        raise LossOptionError(f"loss {loss!r}: modalities {names} repeat a name")
    if count is not None and len(names) != count:
        raise LossOptionError(f"loss {loss!r}: needs exactly {count} modalities, got {names}")
    if len(names) < at_least:
        raise LossOptionError(f"loss {loss!r}: needs at least {at_least} modalities, got {names}")
    return names


def presence(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, modalities: Sequence[str]) -> Tensor:
    """Bool [B]: rows that have every one of ``modalities``, really or by a learned stand-in, and at least one
    really."""
    missing = [m for m in modalities if m not in outputs]
    if missing:
        raise LossOptionError(f"a loss needs modalities {missing}, but the model outputs only {output_modalities(outputs)}")
    first = outputs[modalities[0]]
    keep = torch.ones(first.shape[0], dtype=torch.bool, device=first.device)
    any_real = torch.zeros_like(keep)
    for m in modalities:
        mask = None if batch is None else batch.get(f"{m}_mask")
        real = torch.ones_like(keep) if mask is None else mask.to(device=keep.device, dtype=torch.bool)
        stand_in = outputs.get(f"{m}_stand_in")
        keep = keep & (real if stand_in is None else real | stand_in.to(device=keep.device, dtype=torch.bool))
        any_real = any_real | real
    return keep & any_real


@dataclass
class Rows:
    """The rows of one term: this rank's (``local``) and every rank's (``glob``), per modality.

    ``positives[i]`` is the index in ``glob`` of local row i. ``share`` = world_size / n_global turns a sum over
    local rows into this rank's share of the global mean (see :mod:`mmcl.losses.distributed`).
    """

    local: dict[str, Tensor]
    glob: dict[str, Tensor]
    positives: Tensor
    share: float

    @property
    def n_global(self) -> int:
        return next(iter(self.glob.values())).shape[0]

    def zero(self) -> Tensor:
        """A zero loss that stays in the autograd graph (for terms with no negatives, e.g. one row in all)."""
        return sum(x.sum() for x in self.local.values()) * 0


def select(outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, modalities: Sequence[str]) -> Rows:
    """Rows having all ``modalities``, locally and gathered (with gradient) across ranks."""
    keep = presence(outputs, batch, modalities)
    rank, world_size = distributed.world()
    local = {m: outputs[m][keep] for m in modalities}
    n_local = int(keep.sum())
    if world_size == 1:
        return Rows(local, local, torch.arange(n_local, device=keep.device), 1.0 / max(n_local, 1))
    keep_all = distributed.gather_mask(keep)
    glob = {m: distributed.gather(outputs[m])[keep_all] for m in modalities}
    before = int(keep_all[: rank * keep.shape[0]].sum())
    positives = torch.arange(before, before + n_local, device=keep.device)
    return Rows(local, glob, positives, world_size / max(int(keep_all.sum()), 1))


def exclude(logits: Tensor, columns: Tensor) -> Tensor:
    """``logits`` with entry (i, columns[i]) set to −inf, so a logsumexp over the row skips it."""
    hit = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, columns[:, None], True)
    return logits.masked_fill(hit, float("-inf"))


def info_nce(logits: Tensor, positives: Tensor, decoupled: bool = False, positive_weight: Tensor | None = None,
             extra_negatives: Tensor | None = None) -> Tensor:
    """Per-row InfoNCE, ``-w_i z[i, p_i] + logsumexp_j z[i, j]``; [n].

    ``decoupled`` drops the positive from the logsumexp (DCL); ``positive_weight`` is w_i (1 when None);
    ``extra_negatives`` [n, m] join the logsumexp (DCL's within-modality similarities). With none of them, this is
    the cross-entropy of row i with target p_i.
    """
    positive = logits.gather(1, positives[:, None]).squeeze(1)
    if decoupled:
        logits = exclude(logits, positives)
    if extra_negatives is not None:
        logits = torch.cat([logits, extra_negatives], dim=1)
    if positive_weight is not None:
        positive = positive_weight * positive
    return torch.logsumexp(logits, dim=1) - positive


class PairLoss(nn.Module):
    """Base of losses between two modalities: returns one term, ``{"<name>/<a>-<b>": self.term(...)}``."""

    name = ""

    def __init__(self, modalities: Sequence[str] = ("image", "text")):
        super().__init__()
        self.modalities = check_modalities(self.name, modalities, count=2)

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
        raise NotImplementedError

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        a, b = self.modalities
        return {f"{self.name}/{a}-{b}": self.term(outputs, batch, a, b)}
