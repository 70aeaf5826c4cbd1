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
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0. Backward: the gradient of the concatenation, summed over ranks, sliced to own rows.

    (Written here rather than taken from ``torch.distributed.nn``, whose collectives are deprecated; an all-reduce
    works on every backend, gloo included, where reduce-scatter does not.)
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        rank, world_size = world()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = slice(rank * x.shape[0], (rank + 1) * x.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    """all_reduce(SUM); its adjoint is again an all_reduce(SUM) of the incoming gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0, keeping the gradient path to each rank's rows."""
    if world()[1] == 1:
        return x
    return _GatherRows.apply(x)


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
    return _AllReduceSum.apply(x)


def shared_permutation(n: int, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)`` that is the same on every rank (drawn on rank 0, broadcast)."""
    perm = torch.randperm(n, device=device)
    if world()[1] > 1:
        dist.broadcast(perm, src=0)
    return perm
