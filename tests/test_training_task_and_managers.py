"""The task, the periodic evaluator and the checkpoint manager, each driven alone (one process, no data loader)."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter

import pytest
import torch
from accelerate import Accelerator

from mmcl.errors import UserError
from mmcl.losses.objective import LossTermConfig, Objective
from mmcl.models import create_model
from mmcl.training.checkpoint_manager import CheckpointManager
from mmcl.training.periodic_eval import PeriodicEvaluator
from mmcl.training.config import PeriodicEvalConfig
from mmcl.training.task import ContrastiveTask


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny")


def test_the_task_clamps_the_temperature_after_a_step_and_names_the_weights(tiny):
    model = tiny[0]
    task = ContrastiveTask(model, model, Objective([LossTermConfig(name="clip")]))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) ≫ CLIP's bound of 100
    task.after_optimizer_step()
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    assert task.eval_model() is model
    assert task.state_dict_for_inference(lambda m: {"from": m}) == {"from": model}


def _eval_cfg(**extra) -> PeriodicEvalConfig:
    task = {"type": "zeroshot_classification", "name": "shapes", "data": {"path": "unused"}}
    return PeriodicEvalConfig(tasks=[task], every=3, **extra)


def test_the_evaluator_runs_when_due_writes_on_the_main_process_and_checks_the_metric(tmp_path):
    results = {"shapes": {"task": "zeroshot_classification", "name": "shapes", "metrics": {"top1": 0.5}}}
    calls = []

    def run(*args, **kwargs):
        calls.append(kwargs["rank"])
        return results

    evaluator = PeriodicEvaluator(_eval_cfg(best_metric="shapes/top1"), None, {}, None, device="cpu",
                                  out_dir=tmp_path, rank=0, world_size=1, broadcast=lambda x: x, run=run)
    assert [s for s in range(1, 8) if evaluator.due(s, last_step=7)] == [3, 6, 7]
    assert evaluator(3) == {"shapes/top1": 0.5}
    assert json.loads((tmp_path / "eval" / "step-00000003.json").read_text()) == results
    others = PeriodicEvaluator(_eval_cfg(best_metric="shapes/top5"), None, {}, None, device="cpu", out_dir=None,
                               rank=1, world_size=2, broadcast=lambda x: x, run=run)
    with pytest.raises(UserError, match="eval.best_metric=shapes/top5 is not among"):
        others(3)
    assert calls == [0, 1]


class _Stream:
    def __init__(self):
        self.position = 0

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def _manager(tiny, out, keep_last=1, lr=0.1):
    model = tiny[0]
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    accelerator.prepare(optimizer)  # as the recipe does: its state (the LR it is at) is saved and restored
    task = ContrastiveTask(model, model, Objective([LossTermConfig(name="clip")]))
    stream = _Stream()
    manager = CheckpointManager(accelerator, task, scheduler, stream, out / "checkpoints", keep_last,
                                best_metric="shapes/top1", best_mode="max")
    return manager, scheduler, stream


@pytest.mark.filterwarnings("ignore:Detected call of")  # no optimiser steps here
def test_the_manager_keeps_the_best_resumes_its_state_and_reports_a_finished_run(tiny, tmp_path):
    config = {"data": {"batch_size": 8}, "train": {"seed": 0, "steps": 6}}
    manager, scheduler, stream = _manager(tiny, tmp_path)
    assert manager.resume(None, 6, config, tmp_path).step == 0
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML: the run's first config
    for step, top1 in ((2, 0.5), (4, 0.4)):
        scheduler.step()
        scheduler.step()
        stream.position = step * 10
        manager.save(step, Counter({"bad text": step}), {"shapes/top1": top1})
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best", "best.json", "step-00000002", "step-00000004"]  # the best survives keep_last=1
    assert (tmp_path / "checkpoints" / "best").resolve().name == "step-00000002"
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["step"] == 2

    again, new_scheduler, new_stream = _manager(tiny, tmp_path)
    resumed = again.resume("latest", 6, config, tmp_path)
    assert (resumed.step, resumed.failures, new_stream.position) == (4, Counter({"bad text": 4}), 40)
    assert new_scheduler.last_epoch == 4 and new_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert again.best["step"] == 2 and not again.improves({"shapes/top1": 0.45})
    assert again.improves({"shapes/top1": 0.6})
    assert again.resume("latest", 4, config, tmp_path).finished.name == "step-00000004"


@pytest.mark.filterwarnings("ignore:Detected call of")  # no optimiser steps here
def test_a_resume_with_a_new_length_or_peak_lr_takes_the_new_schedule_at_once_and_says_so(tiny, tmp_path, caplog):
    config = {"train": {"steps": 6}, "optim": {"lr": 0.1}}
    manager, scheduler, _ = _manager(tiny, tmp_path)
    manager.resume(None, 6, config, tmp_path)
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    for _ in range(4):
        scheduler.step()
    manager.save(4, Counter())

    again, new_scheduler, _ = _manager(tiny, tmp_path, lr=0.2)
    with caplog.at_level(logging.INFO, logger="mmcl.train"):
        again.resume("latest", 8, {"train": {"steps": 8}, "optim": {"lr": 0.2}}, tmp_path)
    # Step 5 trains at the new peak times the schedule's factor at step index 4, not at the checkpoint's LR.
    assert new_scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 / 5)
    assert ("resumed at step 4 with optim.lr 0.1 -> 0.2, train.steps 6 -> 8: the learning-rate schedule is "
            "recomputed; the LR of step 5 goes from 0.02 (old schedule) to 0.04 (new schedule)") in caplog.text
