"""Gathering across processes for the "gather with gradient + local loss" scheme (open_clip, Cherti et al. 2023).

Each rank computes the loss of its own rows against the columns of every rank, so memory grows with
B_local × B_global instead of B_global².

The invariant every loss in this package keeps: rank r returns L_r such that ``mean_r L_r`` equals, as a function of
all ranks' features, the loss L of one process on the concatenated batch. The collectives below have exact adjoints
(the gather's backward sums every rank's gradient into the owner's rows, the all-reduce's backward all-reduces), so
``backward`` on every rank followed by DDP's averaging of parameter gradients yields ∇ mean_r L_r = ∇L: one process
and N processes give the same loss and the same gradients. All ranks must hold the same number of rows (the data
pipeline drops the last partial batch); a missing modality is expressed by masks, not by shorter tensors.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0, keeping the gradient path to each rank's rows."""
    if world()[1] == 1:
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


def gather_mask(mask: Tensor) -> Tensor:
    """Concatenate every rank's bool mask (no gradient; sent as uint8 because not every backend takes bool)."""
    if world()[1] == 1:
        return mask
    parts = [torch.empty_like(mask, dtype=torch.uint8) for _ in range(world()[1])]
    dist.all_gather(parts, mask.to(torch.uint8))
    return torch.cat(parts).bool()


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum ``x`` over ranks with gradient (for terms that are a nonlinear function of a global sum)."""
    if world()[1] == 1:
        return x
    return dist_fn.all_reduce(x, op=dist.ReduceOp.SUM)


def shared_permutation(n: int, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)`` that is the same on every rank (drawn on rank 0, broadcast)."""
    perm = torch.randperm(n, device=device)
    if world()[1] > 1:
        dist.broadcast(perm, src=0)
    return perm
