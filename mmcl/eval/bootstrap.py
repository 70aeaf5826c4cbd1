"""Percentile-bootstrap confidence intervals of headline metrics, by resampling the evaluation items (queries).

Each of `samples` resamples draws N of the N items with replacement from one seeded CPU generator, so the same
seed gives the same intervals on any device and any number of processes. The metric is recomputed from the drawn
items' per-item outcomes, and the interval is the (1 − level)/2 and (1 + level)/2 quantiles of the resampled values
(linear interpolation between order statistics, as numpy's default).

Metrics: a mean of per-item hits (top-1, top-5, recall@k of one retrieval direction), and, for labelled items, the
mean per-class recall of the top-1 hits, where a class absent from a resample is left out of that resample's mean
as `metrics.mean_per_class_recall` leaves out classes without items; and for multi-label items (`ItemScores`) the
mAP, recomputed on each resample with every item weighted by how often it was drawn (`average_precision`): a class
with no positive item in a resample is left out of that resample's mean, and a resample where no class has one
(possible with very few positives) is left out of the quantiles. Mean and median rank and the geometry measures
(gap, separability, alignment, uniformity, rank) get no interval.

Resamples are drawn `budget` indices at a time; chunked draws equal the rows of one large draw, so memory stays
bounded whatever N and the intervals do not depend on the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from mmcl.eval.average_precision import MAP, mean_average_precision, ranking, weighted_average_precision
from mmcl.eval.tasks import BootstrapConfig

RESAMPLE_BUDGET = 1 << 22  # drawn indices held at a time: 32 MB as int64, as much again as float64 draw counts
MEAN_PER_CLASS_RECALL = "mean_per_class_recall"  # the result key `classification_metrics` gives it
METHOD = "percentile bootstrap over the evaluation items (queries), resampled with replacement"


@dataclass
class ItemHits:
    """One set of N evaluation items: per metric (its `flatten`ed result key), whether each item scored [N] bool
    (or its score in [0, 1], such as a query's AP@10), so that the metric is the mean of its hits. With `labels` [N] (classes 0..num_classes-1) the item set also has
    a mean per-class recall, of the hits under `top1`."""

    hits: dict[str, torch.Tensor]
    labels: torch.Tensor | None = None
    num_classes: int = 0
    top1: str = "top1"

    def __len__(self) -> int:
        return next(iter(self.hits.values())).numel()


@dataclass
class ItemScores:
    """Multi-label items: scores [N, C] and 0/1 targets [N, C], whose mAP `bootstrap` resamples."""

    scores: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]


def resample_indices(num_items: int, samples: int, seed: int, budget: int = RESAMPLE_BUDGET) -> Iterator[torch.Tensor]:
    """`samples` rows of `num_items` item indices drawn with replacement, in chunks of at most `budget` indices."""
    generator = torch.Generator().manual_seed(seed)
    rows = max(1, budget // num_items)
    for start in range(0, samples, rows):
        yield torch.randint(num_items, (min(rows, samples - start), num_items), generator=generator)


def draw_counts(drawn: torch.Tensor) -> torch.Tensor:
    """[R, N] float64: how many times each resample drew each item."""
    one_each = torch.ones((), dtype=torch.float64).expand(drawn.shape)
    return torch.zeros(drawn.shape, dtype=torch.float64).scatter_add_(1, drawn, one_each)


def resampled_metrics(items: ItemHits, drawn: torch.Tensor) -> torch.Tensor:
    """[R, M] metrics of R resamples `drawn` [R, N]: one column per hit metric, then the mean per-class recall if
    the items are labelled."""
    counts = draw_counts(drawn)
    hits = torch.stack([h.cpu().double() for h in items.hits.values()], dim=1)
    columns = [counts @ hits / drawn.shape[1]]  # times each item was drawn · its hits = the resample's hit count
    if items.labels is not None:
        labels = items.labels.cpu()
        totals = torch.zeros(drawn.shape[0], items.num_classes, dtype=torch.float64).index_add_(1, labels, counts)
        right = torch.zeros_like(totals).index_add_(1, labels, counts * items.hits[items.top1].cpu().double())
        present = totals > 0
        recall = (right / totals.clamp_min(1)).where(present, 0.0)
        columns.append((recall.sum(dim=1) / present.sum(dim=1))[:, None])  # every resample has ≥ 1 item's class
    return torch.cat(columns, dim=1)


def resampled_map(items: ItemScores, ranked: tuple[torch.Tensor, torch.Tensor], drawn: torch.Tensor) -> torch.Tensor:
    """[R, 1] mAP of R resamples `drawn` [R, N] of multi-label items, from their scores' `ranking`."""
    return mean_average_precision(weighted_average_precision(ranked, items.targets.cpu(), draw_counts(drawn)))[:, None]


def intervals(item_sets: list[ItemHits | ItemScores], config: BootstrapConfig,
              budget: int = RESAMPLE_BUDGET) -> dict[str, list[float]]:
    """[low, high] of every metric of every item set, keyed as in `flatten(result["metrics"])`."""
    quantiles = torch.tensor([(1 - config.level) / 2, (1 + config.level) / 2], dtype=torch.float64)
    out = {}
    for items in item_sets:
        ranked = ranking(items.scores.cpu().double()) if isinstance(items, ItemScores) else None  # once, not per chunk
        keys = [MAP] if ranked is not None else (
            list(items.hits) + ([MEAN_PER_CLASS_RECALL] if items.labels is not None else []))
        if len(items) == 0:  # the metric itself is undefined; a bootstrap of nothing would report NaN
            raise ValueError(f"no items to resample for {', '.join(keys)}: bootstrap intervals need at least one")
        values = torch.cat([resampled_metrics(items, drawn) if ranked is None else resampled_map(items, ranked, drawn)
                            for drawn in resample_indices(len(items), config.samples, config.seed, budget)])
        values = values[~values.isnan().any(dim=1)]  # only a multi-label resample without positives is NaN
        bounds = torch.quantile(values, quantiles, dim=0).T
        out.update({key: pair.tolist() for key, pair in zip(keys, bounds)})
    return out


def settings(config: BootstrapConfig) -> dict:
    """What a result records of how its intervals were made."""
    return {**config.model_dump(), "method": METHOD}
