"""A run killed at a random step and resumed with --resume latest ends with the weights of an uninterrupted run.

One setting combines every feature that keeps state across a resume. A single plain process resuming exactly is
covered by tests/test_train_compile.py (eager and compiled) and the data stream's positions by
tests/test_data_resume_position.py, so it is not killed again here: each kill-and-resume costs two launches (the
uninterrupted reference runs in processes forked from the test's).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from data_tools import demo_shapes
from pipelines.cli import main as mmcl
from tests.forked import train_forked
from tests.test_train_periodic_eval import eval_overrides
from tests.train_fixtures import overrides, shape_shards

STEPS = 12  # long enough after the last possible kill point that the kill lands mid-run


def train_args(shards, out, *extra) -> list[str]:
    return ["configs/demo.yaml", *overrides(shards, out, **{"train.steps": STEPS, "train.checkpoint_every": 2,
                                                             "train.keep_checkpoints": 2}), *extra]


def train_command(shards, out, *extra, processes: int = 1) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", str(processes),
            *train_args(shards, out, *extra)]


def everything_at_once(shards, eval_dir) -> list[str]:
    """Two processes, two loader workers each, two micro-batches per step, periodic evaluation choosing the best
    checkpoint, and two sources mixed 3:1 by resampling."""
    sources = [{"shards": str(shards / "shard-000000.tar"), "weight": 3},
               {"shards": str(shards / "shard-000001.tar"), "weight": 1}]
    return ["data.train_shards=null", f"data.sources={json.dumps(sources)}",
            "data.resampled=true", "data.samples_per_epoch=96", "data.num_workers=2", "train.accum_steps=2",
            "data.batch_size=4", *eval_overrides(eval_dir, **{"eval.every": 4})]


def final_weights(out, steps: int):
    return load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shape_shards(tmp_path_factory.mktemp("shards"), num_shards=2, per_shard=24)


def test_kill_at_random_step_then_resume_matches_uninterrupted(shards, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run keeps CPU maths identical
    extra = everything_at_once(shards, demo_shapes.write_class_folders(tmp_path / "eval", per_class=1, seed=3))
    reference = tmp_path / "reference"
    # The uninterrupted run in two processes forked from this one (the killed run goes through `mmcl train`).
    train_forked(train_args(shards, reference, *extra))

    killed = tmp_path / "killed"
    seed = random.randrange(1000)
    # A random checkpoint, then a random moment after it; late enough before the end that the kill lands mid-run.
    kill_after = random.Random(seed).choice([2, 4, 6])
    proc = subprocess.Popen(train_command(shards, killed, *extra, processes=2), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / f"step-{kill_after:08d}").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0, 0.1))
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every training process it started
    proc.wait()
    assert not (killed / "checkpoints" / f"step-{STEPS:08d}").exists(), f"killed too late (kill seed {seed})"

    resumed = subprocess.run(train_command(shards, killed, *extra, "train.resume=latest", processes=2),
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = final_weights(reference, STEPS), final_weights(killed, STEPS)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not (expected[name] == got[name]).all()]
    assert different == [], f"kill seed {seed}"
    # The best checkpoint is the uninterrupted run's, and still there.
    best = json.loads((killed / "checkpoints" / "best.json").read_text())
    assert {k: best[k] for k in ("step", "value")} == {
        k: v for k, v in json.loads((reference / "checkpoints" / "best.json").read_text()).items()
        if k in ("step", "value")}
    assert (Path(best["folder"]) / "model" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if "loss" in r]
    assert logged == list(range(1, STEPS + 1))  # cut back to the checkpoint on resume: each step once
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir() if p.is_dir())
    assert kept[-1] == f"step-{STEPS:08d}" and not [k for k in kept if "." in k]  # no .tmp/.old leftovers
    # The weights are stored once, in model/ (resume read them back from there), not again in train_state/.
    assert not list((killed / "checkpoints" / kept[-1] / "train_state").glob("*.safetensors"))


def test_starting_over_an_existing_run_is_refused(shards, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    assert mmcl(train_command(shards, out)[3:]) == 2  # in this process: the refusal comes before any training
    assert "already holds checkpoints" in capsys.readouterr().err
