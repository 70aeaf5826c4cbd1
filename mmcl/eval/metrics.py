"""Classification metrics on score matrices."""

from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose true label is among the k highest scores. Undefined when k > classes."""
    if k > scores.shape[1]:
        raise ValueError(f"top-{k} accuracy is undefined for {scores.shape[1]} classes")
    topk = scores.topk(k, dim=1).indices
    return (topk == labels[:, None]).any(dim=1).float().mean().item()


def per_class_recall(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 recall of each class (None for a class with no samples)."""
    predicted = scores.argmax(dim=1)
    out: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        out.append((predicted[mask] == c).float().mean().item() if mask.any() else None)
    return out


def mean_per_class_recall(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    recalls = [r for r in per_class_recall(scores, labels, num_classes) if r is not None]
    return sum(recalls) / len(recalls)
