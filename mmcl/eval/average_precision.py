"""Multi-label classification metrics: average precision (AP) per class over the items, and their mean (mAP).

A class's AP ranks the items by their score for it: with n_i the items scoring at least s_i and p_i the positive
ones among them, AP = mean over the positive items i of p_i / n_i. Tied items share the precision at the end of
their tie group, so this is scikit-learn's `average_precision_score` (the step-wise area under its precision-recall
curve, thresholds at the distinct scores), ties included. mAP is the mean over the classes with at least one
positive item; a class with none has no AP (null, counted in `classes_without_positives`) and is left out.

`weighted_average_precision` takes item weights, such as how often a bootstrap resample drew each item: an item
drawn w times counts as w tied copies of itself, which is the AP of the resampled items.
"""

from __future__ import annotations

import torch

from mmcl.eval.metrics import require_finite

MAP = "mAP"  # the headline key of a multi-label result


def ranking(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, (order [C, N]: item indices by descending score, tie_end [C, N]: the position in that order of
    the last item tied with each position's item)."""
    ordered, order = scores.T.sort(dim=1, descending=True, stable=True)
    positions = torch.arange(ordered.shape[1]).expand_as(ordered)
    last = torch.ones_like(ordered, dtype=torch.bool)
    last[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    marked = torch.where(last, positions, ordered.shape[1])  # a group's last position; later ones look back to it
    return order, marked.flip(1).cummin(dim=1).values.flip(1)


def class_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """AP [C] (float64) of each class from scores [N, C] and 0/1 targets [N, C]; NaN for a class without a
    positive item."""
    require_finite(scores, "multi-label scores")
    ones = torch.ones(1, scores.shape[0], dtype=torch.float64)
    return weighted_average_precision(ranking(scores), targets, ones)[0]


def weighted_average_precision(ranked: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor,
                               weights: torch.Tensor) -> torch.Tensor:
    """AP [R, C] of each class under each row of item weights [R, N], from the scores' `ranking`. Classes are
    scored one at a time, so memory stays near a few R · N values; beyond the running weight total, only the
    positive items' columns are computed (few, in most multi-label data)."""
    order, tie_end = ranked
    targets, weights = targets.bool(), weights.double()
    out = torch.full((weights.shape[0], order.shape[0]), float("nan"), dtype=torch.float64)
    for c in range(order.shape[0]):
        positives = targets[order[c], c].nonzero().flatten()  # their positions in this class's ranking
        if positives.numel() == 0:
            continue
        w = weights[:, order[c]]
        ends = tie_end[c, positives]
        above = w.cumsum(dim=1)[:, ends]  # n_i: weight of the items scoring at least positive i's score
        drawn = w[:, positives]
        # p_i: the weight of the positives up to the end of i's tie group, i.e. up to the last one placed there
        right = drawn.cumsum(dim=1)[:, torch.searchsorted(positives, ends, right=True) - 1]
        # 0 / 0 = NaN where a weighting drew no positive; where drawn > 0, above > 0
        out[:, c] = (drawn * right / above.clamp_min(1e-300)).sum(dim=1) / drawn.sum(dim=1)
    return out


def mean_average_precision(ap: torch.Tensor) -> torch.Tensor:
    """mAP [R] of AP rows [R, C] over the classes with an AP (NaN where none has one)."""
    return ap.nanmean(dim=-1)


def scored_multilabel(scores: torch.Tensor, targets: torch.Tensor) -> dict:
    """mAP, per-class AP (null for a class without positives), micro AP (every item-class pair ranked as one
    list, scikit-learn's `average="micro"`), positives per class, and the baseline mAP is read against: the mean
    share of positive items over the scored classes, which a random ranking's AP approaches."""
    num_items, num_classes = targets.shape
    ap = class_average_precision(scores, targets)
    scored = ~ap.isnan()
    if not scored.any():
        raise ValueError("no class has a positive item: mAP is undefined")
    positives = targets.sum(dim=0)
    return {
        MAP: mean_average_precision(ap).item(),
        "per_class_ap": [None if a != a else a for a in ap.tolist()],
        "micro_ap": class_average_precision(scores.reshape(-1, 1), targets.reshape(-1, 1)).item(),
        "class_positives": positives.tolist(),
        "num_samples": num_items,
        "num_classes": num_classes,
        "num_scored_classes": int(scored.sum()),
        "classes_without_positives": int((~scored).sum()),
        "items_without_labels": int((~targets.any(dim=1)).sum()),
        "labels_per_item": positives.sum().item() / num_items,
        "prevalence_mAP": (positives[scored].double() / num_items).mean().item(),
    }
