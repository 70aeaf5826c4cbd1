"""Retrieval, classification and geometry metrics on constructed embeddings, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from mmcl.eval import geometry
from mmcl.eval.metrics import confusion_matrix
from mmcl.eval.retrieval import multimodal_retrieval, paired_retrieval
from mmcl.eval.zeroshot import classification_metrics

E1, E2, E3 = torch.eye(3)

# Three items; four captions, item 0 has two. Ranks worked out by hand in the comments below.
ITEMS = torch.stack([E1, E2, E3])
CAPTIONS = torch.tensor([[0.0, 1.0, 0.0],   # owner 0, but points at item 1
                         [0.8, 0.6, 0.0],   # owner 0
                         [0.0, 0.0, 1.0],   # owner 1, but points at item 2
                         [0.0, 0.6, 0.8]])  # owner 2
OWNER = torch.tensor([0, 0, 1, 2])


@pytest.mark.parametrize("budget", [1, 1 << 24])  # one query row per chunk, or everything at once
def test_recall_at_k_with_several_captions_per_item(budget):
    out = paired_retrieval(ITEMS, CAPTIONS, OWNER, ("image", "text"), ks=(1, 2, 5), budget=budget)
    # image→text, best own caption vs wrong captions scoring at least as high:
    #   item 0: own best 0.8, no wrong caption ≥ 0.8 → rank 1
    #   item 1: own 0.0, wrong captions 1.0, 0.6, 0.6 → rank 4
    #   item 2: own 0.8, wrong caption 1.0 → rank 2
    assert out["image_to_text"] == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(2 / 3),
                                    "recall@5": 1.0, "mean_rank": pytest.approx(7 / 3), "median_rank": 2.0,
                                    "num_queries": 3}
    # text→image: caption 0 scores own item 0.0, items 1 (1.0) and 2 (0.0, a tie counts against) → rank 3;
    #   caption 1 → rank 1; caption 2: own 0.0, items 0 (tie) and 2 above → rank 3; caption 3 → rank 1
    assert out["text_to_image"] == {"recall@1": 0.5, "recall@2": 0.5, "recall@5": 1.0, "mean_rank": 2.0,
                                    "median_rank": 2.0, "num_queries": 4}


def test_collapsed_embeddings_rank_last_not_first():
    same = torch.ones(4, 2) / math.sqrt(2)
    out = paired_retrieval(same, same, torch.arange(4), ("image", "text"), ks=(1,))
    assert out["image_to_text"]["recall@1"] == 0.0 and out["image_to_text"]["mean_rank"] == 4.0


def test_multimodal_retrieval_sum_and_multilinear():
    embeddings = {"a": torch.stack([E1, E1]), "b": torch.stack([E1, E2]), "c": torch.stack([E1, E2])}
    out = multimodal_retrieval(embeddings, ks=(1,))
    # c from (a, b): sum queries (2,0,0) and (1,1,0); the second ties c0 with c1 → ranks 1, 2.
    assert out["a+b_to_c/sum"]["mean_rank"] == 1.5
    # multilinear queries a⊙b = (1,0,0) and (0,0,0); the zero query ties everything → ranks 1, 2.
    assert out["a+b_to_c/multilinear"]["mean_rank"] == 1.5
    # a from (b, c): both items of a are e1, so every query ties its right and wrong answer → rank 2.
    assert out["b+c_to_a/multilinear"] == {"recall@1": 0.0, "mean_rank": 2.0, "median_rank": 2.0, "num_queries": 2}


def test_multilinear_scores_match_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    emb = {m: torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=1) for m in "abc"}
    out = multimodal_retrieval(emb, scorings=("multilinear",), ks=(1, 3), budget=3)
    scores = [[sum(emb["a"][i, d] * emb["b"][i, d] * emb["c"][j, d] for d in range(5)) for j in range(7)]
              for i in range(7)]
    expected = [1 + sum(scores[i][j] >= scores[i][i] for j in range(7) if j != i) for i in range(7)]
    assert out["a+b_to_c/multilinear"]["mean_rank"] == pytest.approx(sum(expected) / 7)
    assert out["a+b_to_c/multilinear"]["recall@3"] == pytest.approx(sum(r <= 3 for r in expected) / 7)


def test_classification_metrics_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2]])
    labels = torch.tensor([0, 0, 1, 2])  # predictions 0, 1, 1, 0
    assert confusion_matrix(scores, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    out = classification_metrics(scores, torch.eye(3), labels)  # identity classes: scores pass through
    assert out["top1"] == 0.5
    assert out["per_class_recall"] == [0.5, 1.0, 0.0]
    assert out["mean_per_class_recall"] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3, unlike top-1 it weighs classes equally
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_gap_alignment_and_matched_cosine_by_hand():
    x, y = torch.stack([E1, E2]), torch.stack([E3, -E3])
    assert geometry.modality_gap(x, y) == pytest.approx(math.sqrt(0.5))  # centroids (.5, .5, 0) and 0
    x, y = torch.stack([E1, E2]), torch.stack([E2, E2])
    assert geometry.alignment(x, y) == pytest.approx(1.0)  # (|e1 - e2|² + 0) / 2
    assert geometry.matched_cosine(x, y) == pytest.approx(0.5)


def test_uniformity_by_hand():
    x = torch.stack([E1, -E1, E2])  # squared distances: 4 (e1, -e1), 2, 2
    expected = math.log((math.exp(-2 * 4) + 2 * math.exp(-2 * 2)) / 3)
    assert geometry.uniformity(x) == pytest.approx(expected)


def test_uniformity_in_chunks_matches_the_direct_sum(monkeypatch):
    x = torch.nn.functional.normalize(torch.randn(50, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    d2 = torch.cdist(x.double(), x.double()).pow(2)
    off = ~torch.eye(50, dtype=torch.bool)
    direct = torch.exp(-2 * d2[off]).mean().log().item()
    monkeypatch.setattr(geometry, "chunk_rows", lambda n: 7)
    assert geometry.uniformity(x) == pytest.approx(direct, rel=1e-9)


def test_effective_rank_by_hand():
    assert geometry.effective_rank(torch.stack([E1, -E1, E2, -E2])) == pytest.approx(2.0)  # singular values √2, √2
    # Gram matrix diag(2, 4): singular values √2 and 2.
    s = torch.tensor([math.sqrt(2), 2.0])
    p = s / s.sum()
    expected = math.exp(-(p * p.log()).sum().item())
    assert geometry.effective_rank(torch.stack([E1, -E1, E2, -E2, E2, -E2])) == pytest.approx(expected)
    assert geometry.effective_rank(torch.stack([E1, E1, E1])) == 0.0  # one point: no spread at all


def test_linear_separability_of_split_and_identical_clouds():
    g = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(20, 3, generator=g)
    x = torch.nn.functional.normalize(E1 + noise, dim=1)
    y = torch.nn.functional.normalize(-E1 + noise, dim=1)
    assert geometry.linear_separability(x, y) == 1.0
    # The same points in both modalities: each test point is predicted one way, right for exactly one copy.
    assert geometry.linear_separability(x, x.clone()) == 0.5
