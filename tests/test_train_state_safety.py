"""A checkpoint given to train.resume may come from anywhere: reading it must never run pickled code."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys

import pytest

from tests.train_fixtures import overrides, shape_shards


class _Payload:
    """Unpickling this would create `marker`: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _train(shards, out, *extra):
    command = [sys.executable, "-m", "pipelines.cli", "train", "configs/demo.yaml",
               *overrides(shards, out, **{"train.steps": 2, "train.checkpoint_every": 2}), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    shards = shape_shards(root / "shards", num_shards=2, per_shard=16)
    result = _train(shards, root / "run")
    assert result.returncode == 0, result.stderr
    return shards, root / "run" / "checkpoints" / "step-00000002"


def test_the_train_state_holds_no_arbitrary_pickles(finished):
    _, checkpoint = finished
    names = {p.name for p in (checkpoint / "train_state").iterdir()}
    assert "scheduler.json" in names
    assert not [n for n in names if n.startswith("custom_checkpoint")]


@pytest.mark.parametrize("planted", ["optimizer.bin", "custom_checkpoint_0.pkl"])
def test_a_planted_pickle_is_refused_without_running(finished, tmp_path, planted):
    shards, checkpoint = finished
    foreign = tmp_path / "downloaded"
    shutil.copytree(checkpoint, foreign)
    marker = tmp_path / "code-ran"
    (foreign / "train_state" / planted).write_bytes(pickle.dumps(_Payload(marker)))
    result = _train(shards, tmp_path / "run", f"train.resume={foreign}", "train.steps=4")
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    assert str(foreign / "train_state") in result.stderr and ("unpickle" in result.stderr or planted in result.stderr)
