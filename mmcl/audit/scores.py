"""Per-sample suspicion scores from embeddings; in every score a higher value is more suspicious.

Two signs of a poisoned sample, after Huang et al., "Detecting Backdoor Samples in Contrastive Language Image
Pretraining" (ICLR 2025), and the image-text agreement CleanCLIP-style defences look at:

- `knn`: the mean cosine similarity to the k nearest other samples (1 - their mean cosine distance). Poisoned pairs
  share a trigger and a target caption, so more than k of them form a dense clump: a high value.
- `lid`: minus the local intrinsic dimensionality (maximum-likelihood estimate from the k neighbours' distances).
  A clump of triggered samples varies in few directions: a low dimension, a high value.
- `dao`: log of the dimensionality-aware outlier score (DAO; Anderberg et al., SDM 2024), the k-distance of a sample
  relative to its neighbours', raised to its own LID: log( mean over neighbours o of (r_k(q) / r_k(o)) ** LID(q) ).
  High where a sample is sparser than its neighbourhood: a poisoned sample with fewer than k others of its kind in
  the set (the regime Huang et al. measure), which `knn` and `lid` miss.
- `similarity`: the cosine of the sample's media and caption embeddings. A model that learned the backdoor ties the
  trigger to the target caption (high); to a model that did not, a poisoned pair is a mismatch (low, the other end
  of the ranking: an AUROC below 0.5 says so).
"""

from __future__ import annotations

import torch

from mmcl.audit.neighbours import Neighbours, nearest

# Distances of unit vectors computed from float32 dot products are exact to about 5e-4: closer samples are
# duplicates, and the floor keeps the logarithms of their distance ratios finite.
DISTANCE_FLOOR = 1e-3


def knn_score(neighbours: Neighbours) -> torch.Tensor:
    """[N] mean cosine similarity to the k nearest neighbours."""
    return neighbours.similarity.double().mean(dim=1)


def lid_mle(distances: torch.Tensor) -> torch.Tensor:
    """[N] maximum-likelihood local intrinsic dimensionality from each row's k nearest distances (ascending):
    LID = -1 / ( (1/k) * sum_i log(r_i / r_k) ), distances floored at DISTANCE_FLOOR. A row of duplicates
    (every r_i = r_k at the floor) has dimension 0; equidistant neighbours farther apart have a very large one."""
    r = distances.double().clamp_min(DISTANCE_FLOOR)
    mean_log = torch.log(r / r[:, -1:]).mean(dim=1)  # <= 0
    lid = -1 / mean_log.clamp_max(-1e-12)
    return torch.where(r[:, -1] <= DISTANCE_FLOOR, torch.zeros_like(lid), lid)


def dao_score(neighbours: Neighbours, lid: torch.Tensor) -> torch.Tensor:
    """[N] log DAO: log( (1/k) * sum over neighbours o of (r_k(q) / r_k(o)) ** LID(q) ), in log space so that a large
    dimension cannot overflow."""
    k_distance = neighbours.distance.double().clamp_min(DISTANCE_FLOOR)[:, -1]
    log_ratio = torch.log(k_distance[:, None] / k_distance[neighbours.index])
    k = neighbours.index.shape[1]
    return torch.logsumexp(lid[:, None] * log_ratio, dim=1) - torch.log(torch.tensor(float(k), dtype=torch.float64))


def neighbourhood_scores(embeddings: torch.Tensor, k: int, references: torch.Tensor | None = None,
                         chunk: int | None = None, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """`knn`, `lid` and `dao` [N] of one modality's unit embeddings [N, d]; see `nearest` for `references`, `chunk`
    and the memory and time they take."""
    options = {} if chunk is None else {"chunk": chunk}
    neighbours = nearest(embeddings, k, references, device=device, **options)
    lid = lid_mle(neighbours.distance)
    return {"knn": knn_score(neighbours), "lid": -lid, "dao": dao_score(neighbours, lid)}


def pair_similarity(media: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """[N] cosine similarity of each sample's media and caption embeddings (unit vectors)."""
    return (media.double() * text.double()).sum(dim=1)


def suspicion_scores(media: torch.Tensor, text: torch.Tensor, modality: str, k: int,
                     references: torch.Tensor | None = None, chunk: int | None = None,
                     device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Every score [N] of paired unit embeddings: `knn_<m>`, `lid_<m>`, `dao_<m>` for m = `modality` (over `media`)
    and text, then `similarity`. The same reference rows serve both modalities."""
    scores = {}
    for name, embeddings in ((modality, media), ("text", text)):
        for score, values in neighbourhood_scores(embeddings, k, references, chunk, device).items():
            scores[f"{score}_{name}"] = values
    scores["similarity"] = pair_similarity(media, text)
    return scores
