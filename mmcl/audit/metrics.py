"""How well a suspicion score finds known poisoned samples: ranks, precision and recall at k, AUROC."""

from __future__ import annotations

import torch


def ranks(score: torch.Tensor) -> torch.Tensor:
    """[N] 1 for the highest score (the most suspicious), N for the lowest; ties keep the set's order."""
    order = torch.sort(score, descending=True, stable=True).indices
    out = torch.empty_like(order)
    out[order] = torch.arange(1, len(order) + 1)
    return out


def precision_recall_at(score: torch.Tensor, poisoned: torch.Tensor, k: int) -> dict[str, float]:
    """Precision and recall of the k highest-scored samples against the bool mask `poisoned`."""
    found = int(poisoned[ranks(score) <= k].sum())
    return {"precision": found / k, "recall": found / max(int(poisoned.sum()), 1)}


def auroc(score: torch.Tensor, poisoned: torch.Tensor) -> float | None:
    """Probability that a poisoned sample scores above a clean one, ties counting one half (the Mann-Whitney U
    statistic over both counts); None without both kinds of sample."""
    positives, negatives = int(poisoned.sum()), int((~poisoned).sum())
    if positives == 0 or negatives == 0:
        return None
    values, inverse = torch.unique(score.double(), return_inverse=True)  # ascending distinct values
    counts = torch.bincount(inverse, minlength=len(values)).double()
    # The average 1-based rank of each distinct value: the ranks its tied samples share.
    before = torch.cumsum(counts, 0) - counts
    average_rank = before + (counts + 1) / 2
    rank_sum = average_rank[inverse][poisoned].sum().item()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def detection_metrics(scores: dict[str, torch.Tensor], poisoned: torch.Tensor, ks: tuple[int, ...]) -> dict:
    """Per score: AUROC, and precision and recall at the number of poisoned samples and at each of `ks` up to the
    number of samples."""
    count = int(poisoned.sum())
    at = sorted({k for k in (count, *ks) if 0 < k <= len(poisoned)})
    return {name: {"auroc": auroc(score, poisoned),
                   **{f"{kind}@{k}": value for k in at for kind, value in precision_recall_at(score, poisoned,
                                                                                               k).items()}}
            for name, score in scores.items()}
