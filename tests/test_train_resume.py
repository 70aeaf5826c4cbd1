"""A run killed at a random step and resumed with --resume latest ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.train_fixtures import overrides, shape_shards

STEPS = 20  # long enough after the last possible kill point that the kill lands mid-run


def train_command(shards, out, *extra) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "train", "configs/demo.yaml",
            *overrides(shards, out, **{"train.steps": STEPS, "train.checkpoint_every": 2,
                                       "train.keep_checkpoints": 2}), *extra]


def final_weights(out):
    return load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shape_shards(tmp_path_factory.mktemp("shards"), num_shards=2, per_shard=24)


def test_kill_at_random_step_then_resume_matches_uninterrupted(shards, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run keeps CPU maths identical
    reference = tmp_path / "reference"
    subprocess.run(train_command(shards, reference), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    kill_after = random.Random().choice([2, 4, 6, 8])  # a random checkpoint, then a random moment after it
    proc = subprocess.Popen(train_command(shards, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / f"step-{kill_after:08d}").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.uniform(0, 0.1))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / f"step-{STEPS:08d}").exists(), "killed too late to test anything"

    resumed = subprocess.run(train_command(shards, killed, "--resume", "latest"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = final_weights(reference), final_weights(killed)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not (expected[name] == got[name]).all()]
    assert different == []
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # cut back to the checkpoint on resume: each step once
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert kept[-1] == f"step-{STEPS:08d}" and len(kept) == 2  # keep_checkpoints, no .tmp leftovers
    # The weights are stored once, in model/ (resume read them back from there), not again in train_state/.
    assert not list((killed / "checkpoints" / kept[-1] / "train_state").glob("*.safetensors"))


def test_starting_over_an_existing_run_is_refused(shards, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    result = subprocess.run(train_command(shards, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "already holds checkpoints" in result.stderr and "Traceback" not in result.stderr
