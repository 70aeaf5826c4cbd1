"""`train.compile`: compiled towers compute what eager ones do, keep their checkpoint keys, and resume exactly.

Compiling is slow on a CPU, so every compiled model here sees the same shapes (the tiny model, batches of 8 in
training mode) and one compute thread, and the file compiles its graphs once: later compiles come from torch's
compile cache. One thread also makes the compiled maths reproducible: inductor's CPU kernel for the token
embedding's gradient adds with atomics across threads, so with two its sums change order from run to run.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcl.config import load_config
from mmcl.models import create_model, load_model
from mmcl.models.factory import resolve_model_config
from mmcl.training.compile import compile_towers
from mmcl.training.config import PretrainConfig
from pipelines.cli import main as mmcl
from pipelines.pretrain import PretrainRecipe, train
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse: one thread, so the graphs are shared)
from tests.train_fixtures import overrides, shape_shards

STEPS = 3
BATCH = 8
# The tiny model with one block per tower: a cold compile of its graphs is the bulk of this file's time (39 s
# against 46 s with two blocks, measured here), and one block exercises every kind of layer two do.
ONE_BLOCK = resolve_model_config("tiny").model_dump(mode="json", exclude_none=True)
for _tower in ONE_BLOCK["towers"].values():
    _tower["cfg"]["layers"] = 1


def one_block_tiny():
    return create_model(ONE_BLOCK)


def config(shards, out, *extra) -> PretrainConfig:
    return load_config(PretrainConfig, "configs/demo.yaml", [
        *overrides(shards, out, **{"train.steps": STEPS, "train.checkpoint_every": 1, "train.keep_checkpoints": STEPS,
                                   "data.num_workers": 0, "data.batch_size": BATCH, "train.cpu_threads": 1,
                                   "model": json.dumps(ONE_BLOCK)}),
        *extra])




def test_compiled_loss_and_gradients_equal_eager():
    torch.manual_seed(0)
    eager, _, tokenizer = one_block_tiny()
    compiled = copy.deepcopy(eager)
    compile_towers(compiled, "default")
    objective = PretrainRecipe(config(Path("unused"), Path("unused"))).build_objective()  # the recipe's CLIP loss
    batch = {"image": torch.randn(BATCH, 3, 64, 64),
             "text": tokenizer([f"a photo of {i} red circles" for i in range(BATCH)])}
    losses = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        model.train()
        losses[name], _ = objective(model(batch), batch)
        losses[name].backward()
    torch.testing.assert_close(losses["compiled"], losses["eager"], rtol=1e-4, atol=1e-4)
    eager_grads = dict(eager.named_parameters())
    for name, param in compiled.named_parameters():
        torch.testing.assert_close(param.grad, eager_grads[name].grad, rtol=1e-4, atol=1e-4, msg=name)
    assert all(tower._compiled_call_impl is not None for tower in compiled.towers.values())


class KeepingRecipe(PretrainRecipe):
    """Keeps the trained model of the last run, for comparison with what its checkpoint holds."""

    model_trained = None

    def train(self):
        folder = super().train()
        KeepingRecipe.model_trained = self.task.unwrapped
        return folder


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model" / "model.safetensors")


def cut_back(run_dir: Path, step: int, to: Path) -> Path:
    """A copy of a run with its checkpoints after `step` removed, as a run killed after that step leaves it."""
    shutil.copytree(run_dir, to)
    for later in range(step + 1, STEPS + 1):
        shutil.rmtree(to / "checkpoints" / f"step-{later:08d}")
    return to


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shape_shards(tmp_path_factory.mktemp("shards"), num_shards=1, per_shard=24)


@pytest.fixture(scope="module")
def compiled_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "run"
    train(config(shards, out, "train.compile=true"), KeepingRecipe)
    model = KeepingRecipe.model_trained
    assert all(tower._compiled_call_impl is not None for tower in model.towers.values())
    return out, model


def test_a_compiled_runs_checkpoint_loads_into_an_eager_model(compiled_run, shards):
    out, trained = compiled_run
    folder = out / "checkpoints" / f"step-{STEPS:08d}" / "model"
    assert load_file(folder / "model.safetensors").keys() == one_block_tiny()[0].state_dict().keys()
    loaded, transforms, tokenizer = load_model(folder)  # strict: any missing or renamed key is an error
    batch = {"image": torch.randn(4, 3, 64, 64), "text": tokenizer(["a photo of a red circle"] * 4)}
    loaded.eval()
    trained.eval()
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):  # the same maths on both sides
        expected, got = trained(batch), loaded(batch)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_a_resumed_compiled_run_ends_with_the_uninterrupted_runs_weights(compiled_run, shards, tmp_path):
    out, _ = compiled_run
    resumed = cut_back(out, 1, tmp_path / "resumed")
    train(config(shards, resumed, "train.compile=true", "train.resume=latest"))
    expected, got = final_weights(out), final_weights(resumed)
    assert expected.keys() == got.keys()
    assert [name for name in expected if not torch.equal(expected[name], got[name])] == []


def test_checkpoints_pass_between_compiled_and_eager_runs(compiled_run, shards, tmp_path):
    out, _ = compiled_run
    eager = cut_back(out, 1, tmp_path / "eager")  # a compiled run's checkpoint, continued without compiling
    train(config(shards, eager, "train.resume=latest"))
    compiled = cut_back(eager, 2, tmp_path / "compiled")  # and an eager run's checkpoint, continued compiled
    train(config(shards, compiled, "train.compile=true", "train.resume=latest"))
    assert final_weights(compiled).keys() == final_weights(out).keys()


def test_compile_settings_are_checked(shards, tmp_path, capsys):
    base = ["train", "configs/demo.yaml", *overrides(shards, tmp_path / "run", **{"train.steps": STEPS})]
    assert mmcl([*base, "train.compile_mode=max-autotune"]) == 2
    assert "compile_mode='max-autotune' is only used with compile: true" in capsys.readouterr().err
    assert mmcl([*base, "train.compile=true", "train.compile_mode=fast"]) == 2
    assert "train.compile_mode: Input should be 'default', 'reduce-overhead'" in capsys.readouterr().err
