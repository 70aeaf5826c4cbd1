"""Two CPU processes (gloo) on halves of one fixed global batch take exactly the optimiser steps of one process on
the whole batch; and `mmcl train --num-processes 2` runs end to end.

The equality test is built so that a gradient-scale error shows: plain SGD (no momentum, no clipping: the update is
lr × gradient, where AdamW would normalise a wrong scale away), the same initial weights and the same data, float64,
and the steps taken the way the trainer takes them (Accelerate's DDP wrapping, `accelerator.backward`,
`accelerator.no_sync`, `forward_backward`). The objective is the CLIP loss with the distributed gather
(mmcl.losses.distributed). A deliberately mis-scaled gather (its backward divided by the world size) must land far
outside the tolerance, so the tolerance is shown to tell a right gradient from a wrong one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from mmcl.losses import distributed
from mmcl.losses.objective import LossTermConfig, Objective
from mmcl.models import create_model
from mmcl.training.accumulation import forward_backward
from tests.forked import run_forked
from tests.train_fixtures import overrides, shape_shards

WORLD = 2
GLOBAL_BATCH = 8
STEPS = 2
LR = 0.5
TOLERANCE = 1e-6
WORDS = ["red circle", "blue square", "green triangle", "yellow circle", "red square", "blue triangle", "green star",
         "yellow square"]


def global_batches(tokenizer) -> list[dict]:
    """One fixed global batch per step (a text missing in some rows, so the gathered masks matter too)."""
    gen = torch.Generator().manual_seed(1)
    return [{"image": torch.randn(GLOBAL_BATCH, 3, 64, 64, generator=gen, dtype=torch.float64),
             "text": tokenizer([f"a {w} {step}" for w in WORDS]),
             "text_mask": torch.arange(GLOBAL_BATCH) != 2 + step}
            for step in range(STEPS)]


def rows(batch: dict, part: slice) -> dict:
    return {k: v[part] for k, v in batch.items()}


def new_model():
    torch.manual_seed(0)
    model, _, tokenizer = create_model("tiny")
    return model.double(), tokenizer


def train(model, batches_per_step: list[list[dict]], backward, no_sync) -> None:
    """STEPS plain SGD steps, each over the given micro-batches."""
    objective = Objective([LossTermConfig(name="clip")])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0)
    for micro_batches in batches_per_step:
        forward_backward(model, objective, micro_batches, backward, no_sync)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _misscaled_backward(ctx, grad):
    """The gather's adjoint divided by the world size: the kind of error the equality test must catch."""
    grad = grad.contiguous()
    torch.distributed.all_reduce(grad)
    return grad[ctx.rows] / distributed.world()[1]


def _worker(rank: int, folder: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)  # as the trainer builds it on CPU: DDP over gloo
    torch.set_num_threads(1)
    assert accelerator.num_processes == WORLD and accelerator.process_index == rank
    _, tokenizer = new_model()
    half = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    local = [rows(batch, half) for batch in global_batches(tokenizer)]
    quarter = GLOBAL_BATCH // WORLD // 2
    variants = {
        "one_micro_batch": [[batch] for batch in local],
        "two_micro_batches": [[rows(batch, slice(0, quarter)), rows(batch, slice(quarter, None))] for batch in local],
        "misscaled_gather": [[batch] for batch in local],
    }
    weights = {}
    for name, steps in variants.items():
        model = accelerator.prepare(new_model()[0])
        assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
        original = distributed._GatherRows.backward
        if name == "misscaled_gather":
            distributed._GatherRows.backward = staticmethod(_misscaled_backward)
        try:
            train(model, steps, accelerator.backward, accelerator.no_sync)
        finally:
            distributed._GatherRows.backward = original
        weights[name] = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
    torch.save(weights, os.path.join(folder, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_process_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_processes")
    run_forked(_worker, (str(folder),), WORLD)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD)]


@pytest.fixture(scope="module")
def one_process_weights():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tokenizer = new_model()
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, [[batch] for batch in global_batches(tokenizer)], backward=lambda loss: loss.backward(),
              no_sync=lambda m: nullcontext())
    finally:
        torch.set_num_threads(threads)
    return initial, model.state_dict()


@pytest.mark.parametrize("variant", ["one_micro_batch", "two_micro_batches"])
def test_two_processes_take_the_one_process_sgd_steps(two_process_weights, one_process_weights, variant):
    initial, alone = one_process_weights
    assert max_difference(initial, alone) > 1e-2  # the steps moved the weights
    for rank in range(WORLD):
        difference = max_difference(two_process_weights[rank][variant], alone)
        assert difference < TOLERANCE, f"rank {rank}, {variant}: weights differ by {difference:.3g}"


def test_a_misscaled_gather_backward_fails_the_equality(two_process_weights, one_process_weights):
    _, alone = one_process_weights
    difference = max_difference(two_process_weights[0]["misscaled_gather"], alone)
    assert difference > 1000 * TOLERANCE, f"a 1/N gather gradient moved the weights by only {difference:.3g}"


def test_a_user_error_inside_the_processes_exits_2_without_torchruns_report(tmp_path):
    # 8 samples cannot give each of 2 processes a batch of 8: refused inside the processes, before training.
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=8)
    command = [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", "2", "configs/demo.yaml",
               *overrides(shards, tmp_path / "run", **{"train.steps": 2})]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "mmcl: error:" in result.stderr and "shard" in result.stderr
    assert "exited with code 2" in result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
