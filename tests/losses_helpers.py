"""Shared test code for the loss tests: random model outputs and gradient extraction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


def random_outputs(batch=8, dim=6, modalities=("image", "text"), scale=5.0, bias=None, seed=0, dtype=torch.float64):
    """A model output dict of L2-normalised leaf embeddings (requires_grad) plus logit_scale (and logit_bias)."""
    gen = torch.Generator().manual_seed(seed)
    outputs = {}
    for m in modalities:
        raw = torch.randn(batch, dim, generator=gen, dtype=dtype)
        outputs[m] = F.normalize(raw, dim=-1).requires_grad_(True)
    outputs["logit_scale"] = torch.tensor(scale, dtype=dtype, requires_grad=True)
    if bias is not None:
        outputs["logit_bias"] = torch.tensor(bias, dtype=dtype, requires_grad=True)
    return outputs


def leaves(outputs):
    return {k: v for k, v in outputs.items() if isinstance(v, torch.Tensor) and v.requires_grad}


def value_and_grads(fn, outputs):
    """(value, {key: gradient}) of the scalar ``fn(outputs)`` with respect to every leaf of ``outputs``."""
    inputs = leaves(outputs)
    value = fn(outputs)
    grads = torch.autograd.grad(value, list(inputs.values()), allow_unused=True)
    return value.detach(), {k: (torch.zeros_like(v) if g is None else g) for (k, v), g in zip(inputs.items(), grads)}


def assert_same(fn_a, fn_b, outputs, atol=1e-9, rtol=1e-7):
    """``fn_a`` and ``fn_b`` agree on ``outputs`` in value and in every gradient."""
    va, ga = value_and_grads(fn_a, outputs)
    vb, gb = value_and_grads(fn_b, outputs)
    torch.testing.assert_close(va, vb, atol=atol, rtol=rtol)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], atol=atol, rtol=rtol, msg=lambda m, k=k: f"gradient of {k}: {m}")


def total(terms):
    """Sum of a loss's named terms."""
    return sum(terms.values())


def masked_subset(outputs, keep, modalities):
    """The rows of ``outputs`` where ``keep`` is true, as a new output dict sharing the scalars."""
    sub = {m: outputs[m][keep] for m in modalities}
    sub.update({k: v for k, v in outputs.items() if k in ("logit_scale", "logit_bias")})
    return sub


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: these tensors are tiny, and on a shared 2-core box extra threads made
    the tests about ten times slower through contention. Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
