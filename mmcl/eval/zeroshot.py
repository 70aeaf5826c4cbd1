"""Zero-shot classification: class prompts embedded by the text tower, queries (image or audio) by their own."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from mmcl.eval.bootstrap import ItemHits
from mmcl.eval.embed import embed_text, refuse_nonfinite
from mmcl.eval.metrics import (confusion_matrix, mean_per_class_recall, per_class_recall, require_finite,
                               topk_accuracy, topk_hits)


def prompts(classnames: list[str], templates: Iterable[str]) -> list[list[str]]:
    """Per class, each template with `{c}` replaced by the class name: exactly the text the model reads."""
    templates = list(templates)
    return [[t.replace("{c}", name) for t in templates] for name in classnames]


def class_embeddings(model, tokenizer, classnames: list[str], templates: Iterable[str],
                     device: torch.device) -> torch.Tensor:
    """[C, D]: per class, the mean of its prompt embeddings, re-normalised (CLIP's prompt ensembling)."""
    per_class = prompts(classnames, templates)
    flat = embed_text(model, tokenizer, [p for row in per_class for p in row], device)
    refuse_nonfinite(flat, [name for name, row in zip(classnames, per_class) for _ in row],
                     "text embeddings of the class prompts", "class(es)")
    return F.normalize(flat.reshape(len(classnames), -1, flat.shape[-1]).mean(dim=1), dim=-1)


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
