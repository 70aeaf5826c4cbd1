"""Zero-shot classification: class prompts embedded by the text tower, queries (image or audio) by their own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcl.eval.bootstrap import ItemHits
from mmcl.eval.embed import embed_text, refuse_nonfinite
from mmcl.eval.metrics import (confusion_matrix, mean_per_class_recall, per_class_recall, require_finite,
                               topk_accuracy, topk_hits)


def class_embeddings(model, tokenizer, classnames: list[str], per_class: list[list[str]],
                     device: torch.device) -> torch.Tensor:
    """[C, D]: per class, the mean of its prompts' embeddings, re-normalised (CLIP's prompt ensembling). Classes
    may have different numbers of prompts (class-specific prompts)."""
    flat = embed_text(model, tokenizer, [p for row in per_class for p in row], device)
    owner = [c for c, row in enumerate(per_class) for _ in row]
    refuse_nonfinite(flat, [classnames[c] for c in owner], "text embeddings of the class prompts", "class(es)")
    sums = torch.zeros(len(classnames), flat.shape[-1], dtype=flat.dtype, device=flat.device)
    sums.index_add_(0, torch.tensor(owner, device=flat.device), flat)
    counts = torch.tensor([len(row) for row in per_class], dtype=flat.dtype, device=flat.device)
    return F.normalize(sums / counts[:, None], dim=-1)


def class_scores(query: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """[N, C]: each query's score against each class; non-finite embeddings are refused."""
    require_finite(query, "query embeddings")
    require_finite(classes, "class embeddings")
    return query @ classes.T


def classification_metrics(query: torch.Tensor, classes: torch.Tensor, labels: torch.Tensor) -> dict:
    """`scored_classification` of the queries against the classes."""
    return scored_classification(class_scores(query, classes), labels)


def scored_classification(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 (and top-5 from five classes up), mean per-class recall, per-class recall, the confusion matrix, and
    the two baselines top-1 is read against: uniform chance and the majority-class rate."""
    num_classes = scores.shape[1]
    metrics = {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5) if num_classes >= 5 else None,
        "mean_per_class_recall": mean_per_class_recall(scores, labels, num_classes),
        "per_class_recall": per_class_recall(scores, labels, num_classes),
        "confusion_matrix": confusion_matrix(scores, labels, num_classes).tolist(),
        "num_samples": int(labels.numel()),
        "num_classes": num_classes,
        "chance_top1": 1.0 / num_classes,
        **majority_class(labels, num_classes),
    }
    if metrics["top5"] is None:
        metrics["top5_note"] = f"top-5 is undefined with {num_classes} classes"
    return metrics


def classification_hits(scores: torch.Tensor, labels: torch.Tensor) -> ItemHits:
    """Each item's top-1 (and, from five classes up, top-5) hit with its label: what `bootstrap` resamples."""
    ks = (1, 5) if scores.shape[1] >= 5 else (1,)
    return ItemHits({f"top{k}": topk_hits(scores, labels, k) for k in ks}, labels, scores.shape[1])


def majority_class(labels: torch.Tensor, num_classes: int) -> dict:
    """Items per class, and the top-1 of always answering the largest class.

    On an unbalanced set this, not 1/classes, is the rate a model must beat to have learnt anything.
    """
    counts = torch.bincount(labels, minlength=num_classes)
    return {"class_counts": counts.tolist(), "majority_top1": counts.max().item() / labels.numel()}
