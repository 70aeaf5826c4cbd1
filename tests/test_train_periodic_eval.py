"""Evaluation during training: metrics in the log, results on disk, the best checkpoint kept through pruning."""

from __future__ import annotations

import json
import time

import pytest

from data_tools import demo_shapes
from mmcl.config import load_config
from mmcl.errors import UserError
from mmcl.eval import run_tasks
from pipelines import pretrain
from pipelines.pretrain import train
from mmcl.training.config import PretrainConfig
from tests.train_fixtures import overrides, shape_shards


def eval_overrides(eval_dir, **extra) -> list[str]:
    task = {"type": "zeroshot_classification", "name": "shapes", "data": {"path": str(eval_dir)},
            "templates": list(demo_shapes.EVAL_TEMPLATES)}
    items = {"eval.tasks": json.dumps([task]), "eval.every": 2, "eval.best_metric": "shapes/top1", **extra}
    return [f"{k}={v}" for k, v in items.items()]


def test_periodic_eval_logs_metrics_and_protects_the_best_checkpoint(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=32)
    eval_dir = demo_shapes.write_class_folders(tmp_path / "eval", per_class=2, seed=3)
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(shards, out, **{"train.steps": 6, "data.num_workers": 0, "train.keep_checkpoints": 1,
                                                "train.log_every": 3})
                      + eval_overrides(eval_dir))
    train(cfg)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r for r in records if "eval/shapes/top1" in r}
    assert sorted(evals) == [2, 4, 6]
    assert all(0.0 <= r["eval/shapes/top1"] <= 1.0 for r in evals.values())
    assert sorted(p.name for p in (out / "eval").iterdir()) == [f"step-{s:08d}.json" for s in (2, 4, 6)]

    best = json.loads((out / "checkpoints" / "best.json").read_text())
    top1 = {s: r["eval/shapes/top1"] for s, r in evals.items()}
    best_step = max(top1, key=lambda s: (top1[s], -s))  # the first step reaching the highest value
    assert best["step"] == best_step and best["value"] == pytest.approx(top1[best_step])
    kept = sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())
    assert kept == sorted({"best", f"step-{best_step:08d}", "step-00000006"})  # keep_checkpoints=1, plus the best
    assert (out / "checkpoints" / "best").resolve().name == f"step-{best_step:08d}"  # the alias


def test_unknown_best_metric_names_the_available_ones(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=16)
    eval_dir = demo_shapes.write_class_folders(tmp_path / "eval", per_class=1, seed=3)
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(shards, tmp_path / "run", **{"train.steps": 2, "data.num_workers": 0})
                      + eval_overrides(eval_dir, **{"eval.best_metric": "shapes/top_one"}))
    with pytest.raises(UserError, match=r"eval.best_metric=shapes/top_one is not among .*shapes/top1"):
        train(cfg)


def test_missing_eval_data_fails_before_training(tmp_path):
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(tmp_path / "none", tmp_path / "run", **{"train.steps": 2})
                      + eval_overrides(tmp_path / "no-eval-data"))
    with pytest.raises(UserError, match="eval task shapes: data path .*no-eval-data does not exist"):
        train(cfg)


class SlowEvaluationRecipe(pretrain.PretrainRecipe):
    pause = 3.0

    def build_evaluator(self):
        evaluator = super().build_evaluator()
        evaluator.run = self.slow_run
        return evaluator

    def slow_run(self, *args, **kwargs):
        time.sleep(self.pause)
        return run_tasks(*args, **kwargs)


def test_evaluation_time_is_not_counted_as_training_time(tmp_path):
    pause = SlowEvaluationRecipe.pause
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=32)
    eval_dir = demo_shapes.write_class_folders(tmp_path / "eval", per_class=1, seed=3)
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(shards, out, **{"train.steps": 6, "data.num_workers": 0, "train.log_every": 3})
                      + eval_overrides(eval_dir, **{"eval.best_metric": "null"}))
    train(cfg, SlowEvaluationRecipe)
    windows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in windows if "samples_per_s" in r]
    assert [r["step"] for r in windows] == [3, 6]  # each window holds an evaluation (steps 2 and 4)
    for r in windows:
        seconds = 3 * 8 / r["samples_per_s"]  # the window's training time, as its samples/s implies
        assert seconds < pause - 0.5
