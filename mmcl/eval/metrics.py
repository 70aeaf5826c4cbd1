"""Classification metrics on score matrices [N, C] and integer labels [N]; the finiteness check every measure's
input passes."""

from __future__ import annotations

import torch


def nonfinite_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Indices of the rows holding a NaN or inf."""
    bad = ~torch.isfinite(tensor)
    return (bad.flatten(1).any(dim=1) if bad.ndim > 1 else bad).nonzero().flatten()


def require_finite(tensor: torch.Tensor, what: str) -> None:
    """ValueError naming `what` (plural: "image embeddings") and its first bad row if any value is NaN or inf.

    Comparisons with NaN are all False and topk ranks NaN first, so non-finite embeddings would otherwise
    come out as plausible, even perfect, scores.
    """
    rows = nonfinite_rows(tensor)
    if rows.numel():
        raise ValueError(f"{what} hold non-finite values (NaN/inf) in {rows.numel()} row(s), first row "
                         f"{int(rows[0])}; refusing to compute a metric from them")


def topk_hits(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """[N] bool: whether each row's true label is among its k highest scores. Undefined when k > classes."""
    if k > scores.shape[1]:
        raise ValueError(f"top-{k} accuracy is undefined for {scores.shape[1]} classes")
    topk = scores.topk(k, dim=1).indices
    return (topk == labels[:, None]).any(dim=1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose true label is among the k highest scores. Undefined when k > classes."""
    return topk_hits(scores, labels, k).float().mean().item()


def confusion_matrix(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts: row = true class, column = top-1 prediction."""
    predicted = scores.argmax(dim=1)
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_recall(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 recall (per-class accuracy) of each class; None for a class with no samples."""
    counts = confusion_matrix(scores, labels, num_classes)
    totals = counts.sum(dim=1)
    return [counts[c, c].item() / totals[c].item() if totals[c] else None for c in range(num_classes)]


def mean_per_class_recall(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean of the per-class recalls over the classes that have samples (balanced accuracy)."""
    recalls = [r for r in per_class_recall(scores, labels, num_classes) if r is not None]
    return sum(recalls) / len(recalls)
