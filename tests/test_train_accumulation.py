"""Accumulating k micro-batches gives the gradients of one batch k times larger (negatives included)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from mmcl.losses.objective import LossTermConfig, Objective
from mmcl.models import create_model
from mmcl.training.accumulation import concat_batches, forward_backward


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulated_gradients_equal_one_large_batch():
    torch.manual_seed(0)
    model, _, tokenizer = create_model("tiny")
    objective = Objective([LossTermConfig(name="clip")])
    words = ["red circle", "blue square", "green triangle", "yellow circle", "red square", "blue triangle"]
    micro = [
        {"image": torch.randn(4, 3, 64, 64), "text": tokenizer([f"a {w} {i}" for w in words[:4]]),
         "image_mask": torch.ones(4, dtype=torch.bool), "text_mask": torch.tensor([True, True, i == 0, True])}
        for i in range(3)
    ]

    whole = concat_batches(micro)
    model.zero_grad()
    reference_total = objective(model(whole), whole)[0]
    reference_total.backward()
    reference = gradients(model)

    model.zero_grad()
    total, _, _ = forward_backward(model, objective, micro, backward=lambda loss: loss.backward(),
                                   no_sync=lambda m: nullcontext())
    accumulated = gradients(model)
    torch.testing.assert_close(total, reference_total)
    assert reference.keys() == accumulated.keys() and "logit_scale" in reference
    for name in reference:
        torch.testing.assert_close(accumulated[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)

    # The naive alternative (mean of per-micro-batch losses) is measurably different: the test can tell.
    model.zero_grad()
    for batch in micro:
        (objective(model(batch), batch)[0] / len(micro)).backward()
    naive = gradients(model)
    assert not torch.allclose(naive["logit_scale"], reference["logit_scale"], rtol=1e-3)
