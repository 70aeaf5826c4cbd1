"""A requeued or edited run: a finished run resumed is a no-op; a changed data order is refused; other changes are
allowed, logged and recorded (a longer train.steps with how the LR moves), and the run's first config.yaml is
kept."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from mmcl.config import load_config
from mmcl.optim import lr_factor
from mmcl.training.config import PretrainConfig
from pipelines.cli import main as mmcl
from tests.train_fixtures import overrides, shape_shards


def _train(shards, out, *extra, steps=4) -> int:
    """`mmcl train` in this process (as the console script runs it): its exit code."""
    return mmcl(["train", "configs/demo.yaml", *overrides(shards, out, **{"train.steps": steps,
                 "train.checkpoint_every": 2, "data.num_workers": 0}), *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("requeue")
    shards = shape_shards(root / "shards", num_shards=1, per_shard=24)
    assert _train(shards, root / "run") == 0
    return shards, root / "run"


def test_resuming_a_finished_run_exits_0_and_changes_nothing(finished, caplog):
    shards, run = finished
    before = (run / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="mmcl.train"):
        assert _train(shards, run, "train.resume=latest") == 0
    assert "already reached train.steps=4, nothing to do" in caplog.text
    assert (run / "metrics.jsonl").read_text() == before


def test_a_changed_data_order_is_refused_naming_each_key(finished, capsys):
    shards, run = finished
    assert _train(shards, run, "train.resume=latest", "data.batch_size=4", "train.seed=3", steps=6) == 2
    stderr = capsys.readouterr().err
    assert "data.batch_size: 8 -> 4" in stderr and "train.seed: 0 -> 3" in stderr


def test_other_changes_are_allowed_and_recorded(finished, tmp_path, caplog):
    shards, run = finished
    first_config = (run / "config.yaml").read_text()
    with caplog.at_level(logging.INFO, logger="mmcl.train"):
        assert _train(shards, run, "train.resume=latest", "train.log_every=2", steps=6) == 0
    # The cosine had reached 0 at step 4 of 4; stretched to 6 steps, step 5 trains at its new LR, and says so.
    optim = load_config(PretrainConfig, "configs/demo.yaml", overrides(shards, run)).optim
    assert (f"resumed at step 4 with train.steps 4 -> 6: the learning-rate schedule is recomputed; the LR of step 5 "
            f"goes from 0 (old schedule) to {optim.lr * lr_factor(4, 6, optim):.3g} (new schedule)") in caplog.text
    assert (run / "config.yaml").read_text() == first_config  # the run's first config stays
    (record,) = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert record == {"step": 4, "changed": {"train.log_every": [1, 2], "train.steps": [4, 6]}}
    assert yaml.safe_load(first_config)["train"]["steps"] == 4
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 6]


def test_a_checkpoint_from_elsewhere_starts_a_new_run_folder(finished, tmp_path):
    shards, run = finished
    checkpoint = run / "checkpoints" / "step-00000002"
    elsewhere = tmp_path / "elsewhere"
    assert _train(shards, elsewhere, f"train.resume={checkpoint}", steps=6) == 0
    (record,) = [json.loads(line) for line in (elsewhere / "resumes.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["changed"]["train.steps"] == [4, 6]
    assert [json.loads(line)["step"] for line in (elsewhere / "metrics.jsonl").read_text().splitlines()] == [3, 4, 5, 6]
