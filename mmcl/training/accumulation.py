"""Gradient accumulation that keeps contrastive negatives: the loss of k micro-batches is the loss of their union.

Averaging k small-batch losses would give each sample only its own micro-batch's negatives. Instead (as open_clip
does), every micro-batch is first embedded without gradient; then each is embedded again with gradient, put in
place of its cached copy, and the loss over the whole accumulated batch is backpropagated. Summed over the k
passes, the gradients equal those of one batch k times larger, because pass j carries exactly dL/df_j · df_j/dθ.
Scalars shared by the whole batch (the temperature, a logit bias) keep their gradient in one pass only — the
last, so that under DDP every parameter takes part in the synchronised backward.
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
    before any backward and returns False to skip the step (nothing is then backpropagated).
    """
    if len(micro_batches) == 1:
        outputs = model(micro_batches[0])
        total, terms = objective(outputs, micro_batches[0])
        if check(total, terms):
            backward(total)
        return total, terms, outputs

    with torch.no_grad():
        cached = [model(batch) for batch in micro_batches]
    whole = concat_batches(micro_batches)
    last = len(micro_batches) - 1
    for index, batch in enumerate(micro_batches):
        with no_sync(model) if index < last else nullcontext():
            outputs = _with_replaced(cached, index, model(batch), keep_scalar_grads=index == last)
            total, terms = objective(outputs, whole)
            if index == 0 and not check(total, terms):
                return total, terms, outputs
            backward(total)
    return total, terms, outputs
