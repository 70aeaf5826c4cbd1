"""Classification metrics on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from mmcl.eval.metrics import mean_per_class_recall, per_class_recall, topk_accuracy
from mmcl.eval.zeroshot import classification_metrics


def test_topk_and_per_class_recall_by_hand():
    scores = torch.tensor([
        [0.9, 0.1, 0.0],  # label 0, predicted 0
        [0.2, 0.7, 0.1],  # label 0, predicted 1 (0 is second)
        [0.1, 0.8, 0.1],  # label 1, predicted 1
        [0.5, 0.3, 0.2],  # label 2, predicted 0 (2 is last)
    ])
    labels = torch.tensor([0, 0, 1, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert per_class_recall(scores, labels, 4) == [0.5, 1.0, 0.0, None]
    assert mean_per_class_recall(scores, labels, 3) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_top5_is_not_reported_below_five_classes():
    query = torch.eye(3)
    result = classification_metrics(query, torch.eye(3), torch.tensor([0, 1, 2]))
    assert result["top1"] == 1.0
    assert result["top5"] is None and "undefined" in result["top5_note"]
    with pytest.raises(ValueError, match="undefined for 3 classes"):
        topk_accuracy(query, torch.tensor([0, 1, 2]), 5)
