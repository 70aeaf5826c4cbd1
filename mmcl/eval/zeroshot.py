"""Zero-shot classification: class prompts embedded by the text tower, queries by their own tower."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from mmcl.eval.metrics import mean_per_class_recall, per_class_recall, topk_accuracy

DEFAULT_TEMPLATES = (
    "a photo of a {c}.",
    "a picture of a {c}.",
    "an image of a {c}.",
    "a {c}.",
)


@torch.no_grad()
def class_embeddings(model, tokenizer, classnames: list[str], templates: Iterable[str],
                     device: torch.device) -> torch.Tensor:
    """[C, D]: per class, the mean of its prompt embeddings, re-normalised (CLIP's prompt ensembling)."""
    templates = list(templates)
    rows = []
    for name in classnames:
        tokens = tokenizer([t.replace("{c}", name) for t in templates]).to(device)
        rows.append(F.normalize(model.encode("text", tokens).mean(dim=0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def embed_queries(model, modality: str, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All query embeddings [N, D] and labels [N] from (inputs, labels) batches."""
    features, labels = [], []
    for inputs, batch_labels in batches:
        features.append(model.encode(modality, inputs.to(device)).float().cpu())
        labels.append(batch_labels)
    if not features:
        raise ValueError("the evaluation dataset is empty")
    return torch.cat(features), torch.cat(labels)


def classification_metrics(query: torch.Tensor, classes: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 (and top-5 from five classes up), mean per-class recall and per-class recall."""
    scores = query @ classes.T
    num_classes = classes.shape[0]
    metrics = {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5) if num_classes >= 5 else None,
        "mean_per_class_recall": mean_per_class_recall(scores, labels, num_classes),
        "per_class_recall": per_class_recall(scores, labels, num_classes),
        "num_samples": int(labels.numel()),
        "num_classes": num_classes,
        "chance_top1": 1.0 / num_classes,
    }
    if metrics["top5"] is None:
        metrics["top5_note"] = f"top-5 is undefined with {num_classes} classes"
    return metrics
