"""train.ema: a moving average of the weights, equal to the EMA recurrence written out, checkpointed in ema/,
resumed exactly, evaluated and exported with --weights ema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcl.config import load_config
from mmcl.errors import UserError
from mmcl.training.config import EmaConfig, PretrainConfig
from mmcl.training.ema import WeightAverage
from pipelines.cli import main as mmcl
from pipelines.pretrain import train
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse: reproducible CPU maths)
from tests.test_train_compile import shards  # noqa: F401  (fixture: one shard of 24 shapes)
from tests.train_fixtures import overrides

STEPS = 6
EMA = ["train.ema={decay: 0.9, warmup_power: 0.75, every: 2}"]


def test_the_average_follows_the_ema_recurrence():
    # Update n (1-based) with warm-up: decay d_n = 0 for n = 1 (the average starts as a copy), else
    # min(decay, 1 - n'^-power) with n' = n (timm's ModelEmaV3: 1 + (n - 1)); then avg = d_n avg + (1 - d_n) w.
    model = torch.nn.Linear(3, 2)
    model.config = None
    average = WeightAverage(model, EmaConfig(decay=0.9, warmup_power=0.75, every=2))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    updates = 0
    for step in range(1, 9):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        average.update(model, step)
        if step % 2 == 0:
            updates += 1
            decay = 0.0 if updates == 1 else min(0.9, 1 - updates ** -0.75)
            expected = {k: decay * expected[k] + (1 - decay) * v for k, v in model.state_dict().items()}
    for name, value in average.module.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6)


def config(shards, out, *extra) -> PretrainConfig:
    return load_config(PretrainConfig, "configs/demo.yaml", [
        *overrides(shards, out, **{"train.steps": STEPS, "train.checkpoint_every": 2, "train.keep_checkpoints": STEPS,
                                   "data.num_workers": 0, "train.cpu_threads": 1}), *EMA, *extra])


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "run"
    train(config(shards, out))
    return out


def step_folder(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}"


def test_checkpoints_hold_the_average_and_a_resumed_run_continues_it_exactly(run, shards, tmp_path):
    final = step_folder(run, STEPS)
    trained, averaged = load_file(final / "model" / "model.safetensors"), load_file(final / "ema" / "model.safetensors")
    assert trained.keys() == averaged.keys()
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained)  # an average, not a copy
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    for later in range(5, STEPS + 1):
        shutil.rmtree(step_folder(resumed, later), ignore_errors=True)
    # At step 4 (update 2) the average is no longer a copy of the weights: resuming must read it back, not restart it.
    at_4 = step_folder(resumed, 4)
    assert any(not torch.equal(a, b) for a, b in zip(load_file(at_4 / "ema" / "model.safetensors").values(),
                                                     load_file(at_4 / "model" / "model.safetensors").values()))
    train(config(shards, resumed, "train.resume=latest"))
    again = load_file(step_folder(resumed, STEPS) / "ema" / "model.safetensors")
    assert [k for k in averaged if not torch.equal(averaged[k], again[k])] == []


def test_eval_and_export_read_the_average_with_weights_ema(run, tmp_path, caplog):
    assert mmcl(["export", str(run), "--weights", "ema", "--format", "mmcl", "--output", str(tmp_path / "avg")]) == 0
    exported = load_file(tmp_path / "avg" / "model.safetensors")
    averaged = load_file(step_folder(run, STEPS) / "ema" / "model.safetensors")
    assert all(torch.equal(exported[k], averaged[k]) for k in averaged)
    from mmcl.eval.models import load_eval_model

    _, _, _, description = load_eval_model(str(run), "ema")
    assert description["weights"] == "moving average (train.ema)"


def test_settings_are_checked(shards, tmp_path):
    with pytest.raises(UserError, match="eval.weights=ema evaluates the moving average of the weights: set train.ema"):
        load_config(PretrainConfig, "configs/demo.yaml", [*overrides(shards, tmp_path, **{"train.steps": 2}),
                                                           "eval={every: 1, tasks: [], weights: ema}"])
    with pytest.raises(UserError, match="ema with fsdp"):
        config(shards, tmp_path, "train.fsdp={}")
    with pytest.raises(UserError, match="holds no moving average"):
        from mmcl.eval.models import load_eval_model
        from mmcl.models import create_model, save_model

        save_model(create_model("tiny")[0], tmp_path / "plain")
        load_eval_model(str(tmp_path / "plain"), "ema")
