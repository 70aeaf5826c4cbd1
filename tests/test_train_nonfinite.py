"""A NaN loss never reaches the weights: the run halts naming the term, or skips the step, as configured."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import pipelines.pretrain as pretrain
from mmcl.config import load_config
from mmcl.losses.objective import Objective
from mmcl.training.config import PretrainConfig
from tests.train_fixtures import overrides, shape_shards


class PoisonedObjective(Objective):
    """The real objective, except that its clip term is NaN on the calls listed in `poisoned`."""

    calls = 0
    poisoned: set[int] = set()

    def forward(self, outputs, batch=None):
        total, terms = super().forward(outputs, batch)
        type(self).calls += 1
        if type(self).calls in self.poisoned:
            terms = {name: value * float("nan") for name, value in terms.items()}
            total = sum(terms.values())
        return total, terms


@pytest.fixture
def shards(tmp_path):
    return shape_shards(tmp_path / "shards", num_shards=1, per_shard=24)


class PoisonedRecipe(pretrain.PretrainRecipe):
    def build_objective(self):
        return PoisonedObjective(self.cfg.loss)


def run(shards, out, poisoned: set[int], **extra):
    PoisonedObjective.calls, PoisonedObjective.poisoned = 0, poisoned
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(shards, out, **{"train.steps": 3, "data.num_workers": 0, **extra}))
    return pretrain.train(cfg, PoisonedRecipe)


def test_halt_names_the_term_and_leaves_weights_untouched(shards, tmp_path):
    with pytest.raises(FloatingPointError, match=r"step 2: non-finite loss \(terms \['clip/image-text'\]\); halting"):
        run(shards, tmp_path / "halt", poisoned={2}, **{"train.checkpoint_every": 1})
    assert (tmp_path / "halt" / "checkpoints" / "step-00000001").is_dir()
    assert not (tmp_path / "halt" / "checkpoints" / "step-00000002").exists()


def test_skip_leaves_weights_of_that_step_unchanged(shards, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mmcl.train")
    checkpoint = run(shards, tmp_path / "skip", poisoned={2},
                     **{"train.on_nonfinite": "skip", "train.checkpoint_every": 1, "train.keep_checkpoints": 3})
    assert "step 2: non-finite loss" in caplog.text and "step skipped" in caplog.text
    step = {i: load_file(tmp_path / "skip" / "checkpoints" / f"step-{i:08d}" / "model" / "model.safetensors")
            for i in (1, 2, 3)}
    assert all(torch.equal(step[1][k], step[2][k]) for k in step[1])  # the skipped step changed nothing
    assert not all(torch.equal(step[2][k], step[3][k]) for k in step[2])  # the next one trained again
    assert all(torch.isfinite(v).all() for v in step[3].values())
    assert checkpoint == tmp_path / "skip" / "checkpoints" / "step-00000003" / "model"


def test_a_nan_on_one_process_skips_the_step_on_all_and_all_halt_together(tmp_path):
    """Rank 1's loss is NaN at every step, rank 0's never: both skip each step (one agreed verdict) and both stop
    at train.max_skipped_steps, instead of rank 0 stepping alone and the next collective hanging."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "tests.nonfinite_rank_run", "configs/demo.yaml",
               *overrides(shape_shards(tmp_path / "two", num_shards=2, per_shard=24), tmp_path / "run",
                          **{"train.steps": 6, "data.num_workers": 0, "data.batch_size": 4,
                             "train.on_nonfinite": "skip", "train.max_skipped_steps": 3})]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    for step in (1, 2, 3):
        assert f"step {step}: non-finite loss (terms on another process); step skipped" in result.stderr
        assert f"step {step}: non-finite loss (terms ['clip/image-text']); step skipped" in result.stderr
    assert "step 4:" not in result.stderr
    assert result.stderr.count("3 non-finite steps in a row (train.max_skipped_steps)") == 2  # both processes
