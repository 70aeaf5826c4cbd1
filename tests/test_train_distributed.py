"""Two CPU processes (gloo) at the same global batch follow the loss curve of one process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.train_fixtures import overrides, shape_shards

STEPS = 24


def losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_loss_curve(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=4, per_shard=48)
    runs = {}
    for processes, per_process_batch in ((1, 16), (2, 8)):
        out = tmp_path / f"run{processes}"
        command = [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", str(processes),
                   "configs/demo.yaml", *overrides(shards, out, **{"train.steps": STEPS,
                                                                   "data.batch_size": per_process_batch})]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[processes] = losses(out)
        assert len(runs[processes]) == STEPS
    one, two = runs[1], runs[2]
    # Different processes read different shards, so batches differ; the curves must still agree closely.
    assert abs(one[0] - two[0]) < 0.1  # same initial weights, similar random batches of 16
    late_one, late_two = sum(one[-8:]) / 8, sum(two[-8:]) / 8
    assert late_one < one[0] - 0.5 and late_two < two[0] - 0.5  # both actually learned
    assert abs(late_one - late_two) < 0.15 * late_one


def test_a_user_error_inside_the_processes_exits_2_without_torchruns_report(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=8)  # one shard cannot feed 2 processes
    command = [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", "2", "configs/demo.yaml",
               *overrides(shards, tmp_path / "run", **{"train.steps": 2})]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "mmcl: error:" in result.stderr and "shard" in result.stderr
    assert "exited with code 2" in result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
