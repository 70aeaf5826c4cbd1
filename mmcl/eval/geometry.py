"""Geometry of an embedding space: how two modalities sit relative to each other, and how spread out each is.

Inputs are L2-normalised embeddings; x[i] and y[i] are the same item seen through two modalities.
Non-finite inputs are refused by the summaries a task reports and by the measures that would turn them into a
plausible number (effective rank, the probe); the others return NaN, which training's per-step log records as is.
"""

from __future__ import annotations

import math

import torch

from mmcl.eval.metrics import require_finite
from mmcl.eval.retrieval import chunk_rows


def modality_gap(x: torch.Tensor, y: torch.Tensor) -> float:
    """Euclidean distance between the two modalities' centroids (Liang et al., 2022)."""
    return (x.double().mean(dim=0) - y.double().mean(dim=0)).norm().item()


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Mean ||x_i - y_i||^alpha over matched pairs (Wang & Isola, 2020); lower is better aligned."""
    return (x.double() - y.double()).norm(dim=1).pow(alpha).mean().item()


def matched_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cosine similarity of matched pairs."""
    return (x.double() * y.double()).sum(dim=1).mean().item()


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """log of the mean of exp(-t ||x_i - x_j||²) over pairs i ≠ j (Wang & Isola, 2020); lower is more uniform.

    Summed in row chunks through logsumexp, so N need not fit as an N×N matrix.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least two embeddings")
    x = x.double()
    sq = x.pow(2).sum(dim=1)
    parts = []
    step = chunk_rows(n)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        dist2 = (sq[rows, None] + sq[None, :] - 2 * x[rows] @ x.T).clamp_min(0)
        logits = -t * dist2
        logits[torch.arange(logits.shape[0]), torch.arange(start, rows.stop)] = float("-inf")  # drop i == j
        parts.append(torch.logsumexp(logits.flatten(), dim=0))
    return (torch.logsumexp(torch.stack(parts), dim=0) - math.log(n * (n - 1))).item()


def effective_rank(x: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the centred embeddings (Roy & Vetterli, 2007).

    D for an isotropic cloud, 1 when every embedding lies on one line, 0 when all are one point: a measure of
    dimensional collapse.
    Centring first means the shared offset of a modality's cone is not counted as a dimension.
    """
    require_finite(x, "embeddings")
    centred = x.double() - x.double().mean(dim=0)
    # Singular values from the D×D Gram matrix: cheap for N ≫ D.
    singular = torch.linalg.eigvalsh(centred.T @ centred).clamp_min(0).sqrt()
    if singular.sum() == 0:
        return 0.0
    p = singular / singular.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def linear_separability(x: torch.Tensor, y: torch.Tensor, steps: int = 100) -> float:
    """Held-out accuracy of a logistic-regression probe telling modality x from modality y.

    Even-indexed items train, odd-indexed items test (a fixed split, so the number is deterministic);
    0.5 means the modalities share one region of the sphere, 1.0 means a hyperplane splits them.
    """
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("linear separability needs at least two embeddings per modality")
    require_finite(x, "x embeddings")
    require_finite(y, "y embeddings")
    features = torch.cat([x, y]).double()
    targets = torch.cat([torch.zeros(x.shape[0]), torch.ones(y.shape[0])]).double()
    index = torch.cat([torch.arange(x.shape[0]), torch.arange(y.shape[0])])
    train, test = index % 2 == 0, index % 2 == 1
    weight = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = features[train] @ weight + bias
        # A little L2 keeps the weights finite when the classes are perfectly separable.
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[train]) + 1e-4 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        predicted = (features[test] @ weight + bias) > 0
    return (predicted.double() == targets[test]).double().mean().item()


def pair_geometry(x: torch.Tensor, y: torch.Tensor, max_probe_samples: int) -> dict:
    """Every cross-modal measure for one modality pair; the probe sees the first `max_probe_samples` of each."""
    require_finite(x, "x embeddings")
    require_finite(y, "y embeddings")
    return {
        "modality_gap": modality_gap(x, y),
        "linear_separability": linear_separability(x[:max_probe_samples], y[:max_probe_samples]),
        "alignment": alignment(x, y),
        "matched_cosine": matched_cosine(x, y),
    }


def modality_geometry(x: torch.Tensor) -> dict:
    """Every single-modality measure."""
    require_finite(x, "embeddings")
    return {"uniformity": uniformity(x), "effective_rank": effective_rank(x), "num_embeddings": int(x.shape[0])}
