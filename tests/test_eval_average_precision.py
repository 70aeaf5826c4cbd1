"""Retrieval AP@10 (LAION-CLAP's mAP@10): per query over all its right candidates, against scikit-learn's
`average_precision_score` and hand-worked cases."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import average_precision_score

from mmcl.eval.retrieval import average_precision, grouped_targets, single_positive_precision


def sklearn_ap(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    out = []
    for row, wanted in zip(scores, targets):
        relevant = torch.zeros(row.shape[0], dtype=torch.bool)
        relevant[wanted[wanted >= 0]] = True
        out.append(average_precision_score(relevant.numpy(), row.numpy()))
    return out


@pytest.mark.parametrize("rounding", [None, 1])  # rounded scores tie often: ties count as scikit-learn counts them
def test_with_k_over_all_candidates_it_is_sklearns_average_precision(rounding):
    gen = torch.Generator().manual_seed(0)
    queries, candidates = torch.randn(7, 4, generator=gen), torch.randn(21, 4, generator=gen)
    if rounding is not None:
        queries, candidates = queries.round(decimals=rounding), candidates.round(decimals=rounding)
    owner = torch.arange(21) % 7  # three right candidates per query, spread over the candidate list
    targets = grouped_targets(owner, 7)
    got = average_precision(queries, candidates, targets, k=21, budget=50)  # small budget: several chunks
    assert got.tolist() == pytest.approx(sklearn_ap(queries @ candidates.T, targets), abs=1e-6)


def test_the_cut_at_k_and_one_right_candidate():
    # Scores of one query over five candidates: 0.9 0.8 0.7 0.6 0.5; right ones at positions 1 and 3.
    query = torch.tensor([[1.0]])
    candidates = torch.tensor([[0.9], [0.8], [0.7], [0.6], [0.5]])
    both = torch.tensor([[0, 2]])
    # AP@10: (1/1 + 2/3) / 2; AP@2: only position 1 counts, over min(2, 2) right ones.
    assert average_precision(query, candidates, both, k=10).item() == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(query, candidates, both, k=2).item() == pytest.approx(0.5)
    # One right candidate: 1/rank within the top k (CLAP's 1/(pred+1)), 0 beyond.
    assert average_precision(query, candidates, torch.tensor([[3]]), k=10).item() == pytest.approx(1 / 4)
    assert average_precision(query, candidates, torch.tensor([[3]]), k=3).item() == 0
    assert single_positive_precision(torch.tensor([1, 4, 11])).tolist() == pytest.approx([1, 0.25, 0])
