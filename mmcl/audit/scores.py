"""Per-sample suspicion scores from embeddings; in every score a higher value is more suspicious.

After Huang et al., "Detecting Backdoor Samples in Contrastive Language Image Pretraining" (ICLR 2025): a poisoned
sample's local neighbourhood is sparse. Its trigger takes it away from the clean data it resembles, and the few
others of its kind are too few among the references (or too scattered by their content) to be its k neighbours, so
those lie farther away, at similar distances, in many directions. Beside these, the image-text agreement that
CleanCLIP-style defences look at:

- `knn`: the mean cosine distance to the k nearest other samples (Huang et al. take the k-th's Euclidean distance;
  the mean over k is steadier).
- `lid`: the local intrinsic dimensionality, the maximum-likelihood estimate from the k neighbours' distances.
- `dao`: log of the dimensionality-aware outlier score (DAO; Anderberg et al., SDM 2024), the k-distance of a sample
  relative to its neighbours', raised to its own LID: log( mean over neighbours o of (r_k(q) / r_k(o)) ** LID(q) ):
  sparser than its own neighbourhood, whatever the density elsewhere.
- `similarity`: the cosine of the sample's media and caption embeddings. A model that learned the backdoor ties the
  trigger to the target caption (high); to a model that did not, a poisoned pair is a mismatch (low).

When more than k poisoned near-copies are among the references they clump instead: dense and of low dimension, at
the other end of `knn` and `lid` (an AUROC near 0). A seeded sample of references (`reference_sample`) keeps them
rare among the references, as the batches Huang et al. score within do.
"""

from __future__ import annotations

import torch

from mmcl.audit.neighbours import DEFAULT_CHUNK, Neighbours, nearest

# Distances of unit vectors computed from float32 dot products are exact to about 5e-4: closer samples are
# duplicates, and the floor keeps the logarithms of their distance ratios finite.
DISTANCE_FLOOR = 1e-3


def knn_score(neighbours: Neighbours) -> torch.Tensor:
    """[N] mean cosine distance (1 - cosine similarity) to the k nearest neighbours."""
    return 1 - neighbours.similarity.double().mean(dim=1)


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
                         chunk: int = DEFAULT_CHUNK, device: torch.device | str = "cpu", rank: int = 0,
                         world_size: int = 1) -> dict[str, torch.Tensor]:
    """`knn`, `lid` and `dao` [N] of one modality's unit embeddings [N, d]; see `nearest` for the other arguments
    and the memory and time they take."""
    neighbours = nearest(embeddings, k, references, chunk, device, rank, world_size)
    lid = lid_mle(neighbours.distance)
    return {"knn": knn_score(neighbours), "lid": lid, "dao": dao_score(neighbours, lid)}


def pair_similarity(media: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """[N] cosine similarity of each sample's media and caption embeddings (unit vectors)."""
    return (media.double() * text.double()).sum(dim=1)


def suspicion_scores(media: torch.Tensor, text: torch.Tensor, modality: str, k: int,
                     references: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK,
                     device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
    """Every score [N] of paired unit embeddings: `knn_<m>`, `lid_<m>`, `dao_<m>` for m = `modality` (over `media`)
    and text, then `similarity`. The same reference rows serve both modalities. With `world_size` > 1 every process
    calls this and shares the neighbour search (`nearest`); all get every score."""
    scores = {}
    for name, embeddings in ((modality, media), ("text", text)):
        for score, values in neighbourhood_scores(embeddings, k, references, chunk, device, rank,
                                                  world_size).items():
            scores[f"{score}_{name}"] = values
    scores["similarity"] = pair_similarity(media, text)
    return scores
