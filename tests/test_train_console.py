"""What a run says on the console (each evaluation, each new best, the closing summary, a data-wait warning), and
its folder as a model spec: `checkpoints/best` and the run folder itself name the best checkpoint."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_tools import demo_shapes
from mmcl.config import load_config
from mmcl.errors import UserError
from mmcl.eval.models import load_eval_model
from mmcl.models import create_model, save_model
from mmcl.training import checkpoints
from mmcl.training.config import PretrainConfig
from mmcl.training.console import DataWaitWatch
from pipelines import pretrain
from tests.test_train_periodic_eval import eval_overrides
from tests.train_fixtures import overrides, shape_shards

TOP1 = {2: 0.3, 4: 0.5, 6: 0.4}  # the evaluation at step 4 is the best


class ScriptedEvalRecipe(pretrain.PretrainRecipe):
    """Evaluations that return TOP1 in turn, so the test knows which step is best."""

    def build_evaluator(self):
        evaluator = super().build_evaluator()
        values = iter(TOP1.values())
        evaluator.run = lambda *args, **kwargs: {
            "shapes": {"task": "zeroshot_classification", "name": "shapes", "metrics": {"top1": next(values)}}}
        return evaluator


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 6-step run evaluated at steps 2, 4 and 6, keeping one checkpoint besides the best; its console log."""
    root = tmp_path_factory.mktemp("console")
    shards = shape_shards(root / "shards", num_shards=1, per_shard=24)
    eval_dir = demo_shapes.write_class_folders(root / "eval", per_class=1, seed=3)
    out = root / "run"
    cfg = load_config(PretrainConfig, "configs/demo.yaml",
                      overrides(shards, out, **{"train.steps": 6, "data.num_workers": 0, "train.keep_checkpoints": 1,
                                                "train.log_every": 3}) + eval_overrides(eval_dir))
    handler, logger = _Capture(), logging.getLogger("mmcl")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as the mmcl command sets it
    try:
        pretrain.train(cfg, ScriptedEvalRecipe)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return out, handler.lines


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.extend(record.getMessage().splitlines())


def test_each_evaluation_and_new_best_is_on_the_console(run):
    out, lines = run
    evals = [line for line in lines if " eval: " in line]
    assert evals == ["step 2 eval: shapes/top1 0.3000 (best)", "step 4 eval: shapes/top1 0.5000 (best)",
                     "step 6 eval: shapes/top1 0.4000 (best 0.5000 at step 4)"]
    bests = [line for line in lines if line.startswith("new best checkpoint")]
    assert [re.search(r"step (\d+)", line).group(1) for line in bests] == ["2", "4"]
    assert str(out / "checkpoints" / "step-00000004") in bests[-1]


def test_the_summary_names_the_best_and_final_checkpoints_and_the_runs_throughput(run):
    out, lines = run
    start = lines.index("run summary:")
    block = {key.strip(): value.strip() for key, value in (line.split(": ", 1) for line in lines[start + 1:start + 6])}
    best = out.resolve() / "checkpoints" / "step-00000004"
    assert block["best checkpoint"].startswith(f"step 4, shapes/top1 0.5000: {best} (alias ")
    assert block["final checkpoint"] == str(out / "checkpoints" / "step-00000006")
    assert re.fullmatch(r"0:\d\d:\d\d \(6 steps trained, 0:\d\d:\d\d of it training\)", block["wall time"])
    samples_per_s, wait = re.fullmatch(r"([\d.]+) samples/s, data wait ([\d.]+)% \(training time only\)",
                                       block["throughput"]).groups()
    assert float(samples_per_s) > 0 and 0 <= float(wait) <= 100
    assert block["samples skipped"] == "0"


def test_the_best_alias_survives_pruning_and_the_run_folder_is_a_model_spec(run, caplog):
    out, _ = run
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best", "best.json", "step-00000004", "step-00000006"]  # keep_checkpoints=1, plus the best
    assert (out / "checkpoints" / "best").resolve() == (out / "checkpoints" / "step-00000004").resolve()
    best_weights = load_file(out / "checkpoints" / "step-00000004" / "model" / "model.safetensors")
    for spec in (out, out / "checkpoints" / "best"):
        with caplog.at_level(logging.INFO, logger="mmcl.eval"):
            model, _, _, description = load_eval_model(str(spec))
        assert all(torch.equal(v, best_weights[k]) for k, v in model.state_dict().items())
    assert "is a training run: evaluating its best checkpoint (step-00000004)" in caplog.text
    assert description["source"] == str(out / "checkpoints" / "best")


def test_without_symlinks_the_alias_is_a_pointer_file_that_resume_and_eval_follow(tmp_path, monkeypatch):
    checkpoint_dir = tmp_path / "run" / "checkpoints"
    model = create_model("tiny")[0]
    for step in (2, 4):
        save_model(model, checkpoints.step_folder(checkpoint_dir, step) / "model")
        (checkpoints.step_folder(checkpoint_dir, step) / "train_state").mkdir()
    assert checkpoints.run_checkpoint(tmp_path / "run") == (
        checkpoint_dir / "step-00000004", "latest complete checkpoint (step-00000004; no best checkpoint: the run "
        "has no eval.best_metric, or has not evaluated yet)")

    def no_symlinks(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    checkpoints.link_best(checkpoint_dir, checkpoint_dir / "step-00000002")
    (checkpoints.step_folder(checkpoint_dir, 6) / "train_state").mkdir(parents=True)
    alias = checkpoint_dir / "best"
    assert alias.is_file() and not alias.is_symlink()
    assert checkpoints.run_checkpoint(tmp_path / "run")[0] == checkpoint_dir / "step-00000002"
    assert checkpoints.resolve_resume(str(alias), checkpoint_dir) == checkpoint_dir / "step-00000002"
    assert checkpoints.resolve_resume("latest", checkpoint_dir).name == "step-00000006"  # the alias is no step
    assert load_eval_model(str(alias))[3]["source"] == str(alias)
    checkpoints.prune(checkpoint_dir, 1, protect={checkpoint_dir / "step-00000002"})
    assert sorted(p.name for p in checkpoint_dir.iterdir()) == ["best", "step-00000002", "step-00000006"]
    alias.unlink()  # a run from before the alias: best.json names the best
    checkpoints.write_json(checkpoint_dir / "best.json", {"folder": str(checkpoint_dir / "step-00000002")})
    assert checkpoints.run_checkpoint(tmp_path / "run")[0] == checkpoint_dir / "step-00000002"


def test_a_run_folder_without_a_complete_checkpoint_says_so(tmp_path):
    (tmp_path / "run" / "checkpoints" / "step-00000002.tmp").mkdir(parents=True)
    with pytest.raises(UserError, match="a training run without a complete checkpoint yet"):
        load_eval_model(str(tmp_path / "run"))


def test_the_data_wait_warning_comes_once_after_three_slow_intervals(caplog):
    watch = DataWaitWatch(num_workers=2, cpu_threads=4)
    fractions = [0.9, 0.5, 0.6, 0.1, 0.4, 0.5, 0.6, 0.7, 0.8]  # the first (loader start-up) does not count
    with caplog.at_level(logging.WARNING, logger="mmcl.train"):
        for step, fraction in enumerate(fractions, start=1):
            watch(step * 10, fraction)
            assert len(caplog.records) == (1 if step >= 7 else 0), step
    (message,) = caplog.messages
    assert "40%/50%/60% of the time over the last 3 log intervals (steps 50-70)" in message
    assert "data.num_workers, now 2" in message and "--image-size" in message and "train.cpu_threads, now 4" in message


def test_an_evaluation_line_names_each_tasks_headline_metric():
    from mmcl.training.console import eval_line

    evaluated = {"shapes/top1": 0.5, "shapes/top5": 0.9, "tags/mAP": 0.25, "tags/micro_AP": 0.3,
                 "ret/image_to_text/recall@1": 0.1, "ret/image_to_text/recall@5": 0.4}
    line = eval_line(10, evaluated, "shapes/top1", {"value": 0.4, "step": 5}, improves=True)
    assert line == "step 10 eval: shapes/top1 0.5000 (best), tags/mAP 0.2500, ret/image_to_text/recall@1 0.1000"
