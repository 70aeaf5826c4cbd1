"""Gradient accumulation that keeps contrastive negatives: the loss of k micro-batches is the loss of their union.

Averaging k small-batch losses would give each sample only its own micro-batch's negatives. Instead (as open_clip
does), every micro-batch is first embedded without gradient; then each is embedded again with gradient, put in
place of its cached copy, and the loss over the whole accumulated batch is backpropagated. Summed over the k
passes, the gradients equal those of one batch k times larger, because pass j carries exactly dL/df_j · df_j/dθ.
Scalars shared by the whole batch (the temperature, a logit bias) keep their gradient in one pass only — the
last, so that under DDP every parameter takes part in the synchronised backward.

That identity needs pass j's recomputed features to be the cached ones, and the k loss evaluations to be one
function. Both draw random numbers: dropout, drop-path or any other randomness in the model's forward, and losses
that sample negatives (Symile with ``negative_sampling: n``). So the random number generators are replayed:

* before micro-batch j's cached forward, the RNG state is recorded; its recomputation restores it, so it draws
  the same dropout / drop-path masks;
* every loss evaluation starts from the state the cached forwards left, so all k evaluations draw the same
  negatives — once per optimiser step, not once per pass.

What "one batch k times larger" means here: the model applied to the micro-batches in turn (masks drawn micro-batch
by micro-batch, as the cached pass draws them), then the loss once over their concatenation. Accumulated gradients
equal that reference's (tested in float64 with dropout, drop-path and Symile), and the step leaves the RNG exactly
where the reference leaves it: the step consumes the draws of one forward per micro-batch and one loss evaluation,
as an unaccumulated step does; the recomputations consume nothing. (A single forward over the concatenated batch
would draw its masks in one call, which is a different — equally distributed — sample of masks.) The states
replayed are the CPU generator's and, when CUDA is in use, the current CUDA device's; generators a model keeps of
its own are not replayed.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch


def concat_batches(batches: list[dict]) -> dict:
    """One batch dict from several: tensors concatenated on dim 0, lists joined; other entries from the first."""
    merged = {}
    for key, first in batches[0].items():
        if isinstance(first, torch.Tensor):
            merged[key] = torch.cat([b[key] for b in batches])
        elif isinstance(first, list):
            merged[key] = [item for b in batches for item in b[key]]
        else:
            merged[key] = first
    return merged


def rng_state() -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global random state the model and the losses draw from: the CPU generator's and, when CUDA has been
    initialised, the current device's."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def _with_replaced(cached: list[dict], index: int, fresh: dict, keep_scalar_grads: bool) -> dict:
    outputs = {}
    for key, value in fresh.items():
        if value.ndim == 0:
            outputs[key] = value if keep_scalar_grads else value.detach()
        else:
            outputs[key] = torch.cat([fresh[key] if i == index else c[key] for i, c in enumerate(cached)])
    return outputs


def forward_backward(model, objective, micro_batches: list[dict], backward: Callable, no_sync: Callable,
                     check: Callable[[torch.Tensor, dict], bool] = lambda total, terms: True):
    """Forward and backward for one optimiser step; returns (total, terms, outputs), the outputs covering all
    micro-batches in order.

    `backward(loss)` runs the backward pass (Accelerate's, for loss scaling); `no_sync(model)` is a context
    skipping the gradient all-reduce of DDP for all but the last pass. `check(total, terms)` runs on the loss
    before any backward and returns False to skip the step (nothing is then backpropagated). Random draws are
    replayed so that the gradients are those of one batch k times larger (see the module docstring).
    """
    if len(micro_batches) == 1:
        outputs = model(micro_batches[0])
        total, terms = objective(outputs, micro_batches[0])
        if check(total, terms):
            backward(total)
        return total, terms, outputs

    before = []  # RNG state before each micro-batch's cached forward
    with torch.no_grad():
        cached = []
        for batch in micro_batches:
            before.append(rng_state())
            cached.append(model(batch))
    after_forwards = rng_state()
    whole = concat_batches(micro_batches)
    last = len(micro_batches) - 1
    for index, batch in enumerate(micro_batches):
        with no_sync(model) if index < last else nullcontext():
            set_rng_state(before[index])
            fresh = model(batch)
            set_rng_state(after_forwards)
            outputs = _with_replaced(cached, index, fresh, keep_scalar_grads=index == last)
            total, terms = objective(outputs, whole)
            if index == 0 and not check(total, terms):
                return total, terms, outputs
            backward(total)
    return total, terms, outputs
