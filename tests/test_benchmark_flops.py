"""benchmarks/flops.py: the training-step FLOP count against an independent formula, and the card peak table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.flops import card_bf16_peak, model_flops_per_sample  # noqa: E402
from mmcl.losses.objective import LossTermConfig, Objective  # noqa: E402
from mmcl.models import create_model  # noqa: E402


def test_linear_forward_backward_is_three_matmuls():
    # Forward x·Wᵀ, backward dL/dx and dL/dW: three products of 2·B·in·out FLOPs each (multiply-add = 2).
    batch, d_in, d_out = 8, 32, 16
    layer = torch.nn.Linear(d_in, d_out)
    x = torch.randn(batch, d_in, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * batch * d_in * d_out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, _, _ = create_model("tiny")
    return model


def example(model, rows: int) -> dict:
    return {m: tower.example_input(rows) for m, tower in model.towers.items()}


def test_tiny_model_step_scales_with_batch_and_counts_backward(tiny):
    per_sample_2 = model_flops_per_sample(tiny, example(tiny, 2))
    per_sample_4 = model_flops_per_sample(tiny, example(tiny, 4))
    assert per_sample_2 > 0
    # Per sample, the towers cost the same at any batch; only the loss's B×B logits grow with it (tiny here).
    assert per_sample_4 == pytest.approx(per_sample_2, rel=1e-3)
    # A backward costs about twice its forward (attention's 2.5×): a missed backward op would show here.
    batch = example(tiny, 2)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        Objective([LossTermConfig(name="clip")])(tiny(batch), batch)
    forward = counter.get_total_flops() / 2
    assert 2.9 * forward < per_sample_2 < 3.1 * forward
    assert all(p.grad is None for p in tiny.parameters())


def test_card_peaks_match_the_most_specific_name():
    assert card_bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert card_bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert card_bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert card_bf16_peak("NVIDIA A10G") == 70e12
    assert card_bf16_peak("NVIDIA L4") == 121e12
    assert card_bf16_peak("NVIDIA L40S") == 362e12
    assert card_bf16_peak("Tesla V100-SXM2-16GB") is None  # no bf16 tensor cores: measured instead
