"""k nearest neighbours of every embedding by cosine similarity, in chunks, keeping only a running top-k.

Memory: the embeddings [N, d] (float32, or float16 to halve them), one block of similarities [chunk, chunk] and the
answer [N, k]: O(N·d + chunk² + N·k), never the [N, N] matrix. Time: O(N²·d) against the whole set, O(N·M·d) against
a seeded sample of M references (`reference_sample`), the way to audit millions of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_CHUNK = 4096  # rows per block: a [4096, 4096] float32 block is 64 MiB


@dataclass
class Neighbours:
    """Each query's k most similar references, most similar first: `similarity` [N, k] cosine similarities,
    `index` [N, k] their row in the full set (not in the reference sample)."""

    similarity: torch.Tensor
    index: torch.Tensor

    @property
    def distance(self) -> torch.Tensor:
        """Euclidean distances of unit vectors, sqrt(2 - 2 cos): what intrinsic-dimension estimates need."""
        return (2 - 2 * self.similarity).clamp_min(0).sqrt()


def reference_sample(count: int, size: int | None, seed: int = 0) -> torch.Tensor:
    """Rows of the references: all `count` rows, or a seeded sample of `size` of them in ascending order."""
    if size is None or size >= count:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:size].sort().values


def nearest(embeddings: torch.Tensor, k: int, references: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK,
            device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> Neighbours:
    """The k nearest references (rows `references` of `embeddings`, default all) of every row of `embeddings`
    (unit vectors [N, d]), a row never being its own neighbour. Raises ValueError when fewer than k references are
    left to a row.

    With `world_size` > 1 every process calls this with all the embeddings and its `rank`: each searches every
    world_size-th block of queries and all receive the whole answer. A block's numbers do not depend on which
    process computes it, so they are those of one process."""
    count = embeddings.shape[0]
    references = torch.arange(count) if references is None else references
    if references.numel() - 1 < k:  # a query among the references loses itself
        raise ValueError(f"{k} neighbours asked among {references.numel()} references; lower k")
    # Rows another process searches stay zero here: summing over processes then gives every row exactly.
    similarity = torch.zeros(count, k)
    index = torch.zeros(count, k, dtype=torch.long)
    for start in range(rank * chunk, count, world_size * chunk):
        rows = torch.arange(start, min(start + chunk, count))
        queries = embeddings[rows].to(device, torch.float32)
        best = torch.full((len(rows), k), -torch.inf, device=device)
        best_index = torch.full((len(rows), k), -1, dtype=torch.long, device=device)
        for ref_start in range(0, references.numel(), chunk):
            columns = references[ref_start:ref_start + chunk]
            block = queries @ embeddings[columns].to(device, torch.float32).T
            block[rows.to(device)[:, None] == columns.to(device)[None, :]] = -torch.inf  # not its own neighbour
            # Merge the running top-k with this block's: k + chunk candidates per row, never N.
            merged = torch.cat([best, block], dim=1)
            merged_index = torch.cat([best_index, columns.to(device).expand(len(rows), -1)], dim=1)
            best, at = merged.topk(k, dim=1)
            best_index = merged_index.gather(1, at)
        similarity[rows], index[rows] = best.cpu(), best_index.cpu()
    if world_size > 1:
        similarity, index = (_summed(t, device) for t in (similarity, index))
    return Neighbours(similarity, index)


def _summed(tensor: torch.Tensor, device) -> torch.Tensor:
    """The sum over processes, on the CPU (reduced on `device`: NCCL reduces only GPU tensors)."""
    tensor = tensor.to(device)
    torch.distributed.all_reduce(tensor)
    return tensor.cpu()
