"""Retrieval ranks and recall@k between embedding sets, computed in row chunks.

A query's rank is 1 + the number of wrong candidates scoring at least as high as its best right candidate:
ties count against the model, so a collapsed model (all embeddings equal) ranks last, not first.
Score matrices are built `chunk_rows` queries at a time, so memory stays near `budget` floats whatever N is.
Non-finite embeddings are refused: no wrong candidate beats a NaN score, so NaN would rank first.
"""

from __future__ import annotations

import torch

from mmcl.eval.bootstrap import ItemHits
from mmcl.eval.metrics import require_finite
from mmcl.eval.tasks import DEFAULT_KS

SCORE_BUDGET = 1 << 24  # floats per score chunk: 64 MB in float32
MAP = "mAP@10"  # the key of mean AP@10 in each direction's summary


def chunk_rows(num_candidates: int, budget: int = SCORE_BUDGET) -> int:
    return max(1, budget // max(1, num_candidates))


def _scored_chunks(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, budget: int,
                   per_query: int = 1):
    """(scores [c, M], right candidates' scores [c, K] with -inf padding, valid [c, K]) for query chunks small
    enough that `per_query` score-sized tensors per query stay within `budget` floats."""
    require_finite(queries, "queries")
    require_finite(candidates, "candidates")
    step = chunk_rows(candidates.shape[0] * per_query, budget)
    for start in range(0, queries.shape[0], step):
        scores = queries[start:start + step] @ candidates.T
        wanted = targets[start:start + step]
        valid = wanted >= 0
        yield scores, scores.gather(1, wanted.clamp_min(0)).masked_fill(~valid, float("-inf")), valid


def ranks(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor,
          budget: int = SCORE_BUDGET) -> torch.Tensor:
    """Rank [Nq] of each query's best right candidate; `targets` [Nq, K] lists the right candidates' indices,
    padded with -1 where a query has fewer than K.

    The right candidates' scores are gathered from the same score chunk, so ties are judged on equal floats;
    rank = 1 + (candidates scoring ≥ best) − (right ones among them): one pass over each chunk.
    """
    out = []
    for scores, right, valid in _scored_chunks(queries, candidates, targets, budget):
        best = right.max(dim=1, keepdim=True).values
        out.append(1 + (scores >= best).sum(dim=1) - ((right >= best) & valid).sum(dim=1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def average_precision(queries: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, k: int = 10,
                      budget: int = SCORE_BUDGET) -> torch.Tensor:
    """AP@k [Nq] (float64) of each query over its right candidates (`targets` as for `ranks`).

    A right candidate j sits at position n_j = the number of candidates scoring at least s_j (ties count against
    the model, as in `ranks`), with precision p_j = (right candidates among them) / n_j; AP@k = Σ_{j: n_j ≤ k} p_j
    / min(#right, k). With one right candidate this is 1/rank within the top k and 0 beyond, the mAP@10 LAION-CLAP
    reports; with k at least the number of candidates it is scikit-learn's `average_precision_score`.
    """
    out = []
    for scores, right, valid in _scored_chunks(queries, candidates, targets, budget, per_query=targets.shape[1]):
        position = (scores[:, None, :] >= right[:, :, None]).sum(dim=2)  # [c, K]
        right_above = ((right[:, None, :] >= right[:, :, None]) & valid[:, None, :]).sum(dim=2)
        counted = valid & (position <= k)
        precision = torch.where(counted, right_above.double() / position.clamp_min(1).double(), 0.0)
        out.append(precision.sum(dim=1) / valid.sum(dim=1).clamp(max=k).double())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def single_positive_precision(query_ranks: torch.Tensor, k: int = 10) -> torch.Tensor:
    """AP@k from the rank of a query's only right candidate: 1/rank within the top k, else 0."""
    r = query_ranks.double()
    return torch.where(r <= k, 1.0 / r, 0.0)


def grouped_targets(owner: torch.Tensor, num_items: int) -> torch.Tensor:
    """[num_items, K]: for each item, the indices j with owner[j] == item, padded with -1."""
    counts = torch.bincount(owner, minlength=num_items)
    if (counts == 0).any():
        raise ValueError(f"item {int((counts == 0).nonzero()[0])} has no candidate to retrieve")
    order = owner.argsort(stable=True)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(owner)) - first[owner[order]]
    targets = torch.full((num_items, int(counts.max())), -1, dtype=torch.long)
    targets[owner[order], slot] = order
    return targets


def rank_summary(query_ranks: torch.Tensor, ks=DEFAULT_KS) -> dict:
    """recall@k for each k, mean rank and median rank (the mean of the two middle ranks for an even count)."""
    r = query_ranks.double()
    out = {f"recall@{k}": (r <= k).double().mean().item() for k in ks}
    out["mean_rank"] = r.mean().item()
    out["median_rank"] = r.quantile(0.5).item()
    out["num_queries"] = int(r.numel())
    return out


def recall_hits(direction_ranks: dict[str, torch.Tensor], ks=DEFAULT_KS,
                precision: dict[str, torch.Tensor] | None = None) -> list[ItemHits]:
    """Per direction, each query's hit at every k (`DIRECTION/recall@k`) and, given, its AP@10
    (`DIRECTION/mAP@10`, a mean of per-query values like the hits): what `bootstrap` resamples."""
    return [ItemHits({**{f"{direction}/recall@{k}": found <= k for k in ks},
                      **({f"{direction}/{MAP}": precision[direction]} if precision else {})})
            for direction, found in direction_ranks.items()]


def paired_average_precision(items: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor,
                             names: tuple[str, str], budget: int = SCORE_BUDGET) -> dict[str, torch.Tensor]:
    """AP@10 of every query of both directions of `paired_ranks`, keyed alike: item→candidate over all of the
    item's candidates (its several captions), candidate→item over its one item."""
    a, b = names
    return {f"{a}_to_{b}": average_precision(items, texts, grouped_targets(owner, items.shape[0]), 10, budget),
            f"{b}_to_{a}": average_precision(texts, items, owner[:, None], 10, budget)}


def paired_ranks(items: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor, names: tuple[str, str],
                 budget: int = SCORE_BUDGET) -> dict[str, torch.Tensor]:
    """Query ranks of both directions between N items [N, D] and M ≥ N candidates [M, D] where `owner[j]` is
    candidate j's item, keyed `A_to_B`.

    item→candidate: a hit when any of the item's candidates (e.g. its several captions) is within k.
    candidate→item: each candidate queries the N items; its own item is the one right answer.
    """
    a, b = names
    require_finite(items, f"{a} embeddings")
    require_finite(texts, f"{b} embeddings")
    return {f"{a}_to_{b}": ranks(items, texts, grouped_targets(owner, items.shape[0]), budget),
            f"{b}_to_{a}": ranks(texts, items, owner[:, None], budget)}


def paired_retrieval(items: torch.Tensor, texts: torch.Tensor, owner: torch.Tensor, names: tuple[str, str],
                     ks=DEFAULT_KS, budget: int = SCORE_BUDGET) -> dict:
    """`rank_summary` of each direction of `paired_ranks`."""
    return {d: rank_summary(r, ks) for d, r in paired_ranks(items, texts, owner, names, budget).items()}


def multimodal_query(given: list[torch.Tensor], scoring: str) -> torch.Tensor:
    """One query vector per item from the embeddings of the given modalities.

    `sum`: ranking candidates c by Σ_m <g_m, c> equals ranking by <Σ_m g_m, c>.
    `multilinear`: Symile's multilinear inner product Σ_d g1_d g2_d c_d equals <g1 ⊙ g2, c>.
    """
    if scoring == "sum":
        return torch.stack(given).sum(dim=0)
    if scoring == "multilinear":
        return torch.stack(given).prod(dim=0)
    raise ValueError(f"unknown multimodal scoring {scoring!r}; expected 'sum' or 'multilinear'")


def multimodal_ranks(embeddings: dict[str, torch.Tensor], scorings=("sum", "multilinear"),
                     budget: int = SCORE_BUDGET) -> dict[str, torch.Tensor]:
    """For each modality: the ranks of retrieving it from the other modalities of the same item, under each
    scoring, keyed `A+B_to_C/SCORING`."""
    for m, e in embeddings.items():
        require_finite(e, f"{m} embeddings")  # named here: `ranks` sees only the combined queries
    out = {}
    n = next(iter(embeddings.values())).shape[0]
    diagonal = torch.arange(n)[:, None]
    for target, candidates in embeddings.items():
        given = [e for m, e in embeddings.items() if m != target]
        for scoring in scorings:
            query = multimodal_query(given, scoring)
            out[f"{'+'.join(m for m in embeddings if m != target)}_to_{target}/{scoring}"] = ranks(
                query, candidates, diagonal, budget)
    return out


def multimodal_retrieval(embeddings: dict[str, torch.Tensor], scorings=("sum", "multilinear"), ks=DEFAULT_KS,
                         budget: int = SCORE_BUDGET) -> dict:
    """`rank_summary` of each direction and scoring of `multimodal_ranks`."""
    return {d: rank_summary(r, ks) for d, r in multimodal_ranks(embeddings, scorings, budget).items()}
