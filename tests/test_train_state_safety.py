"""A checkpoint given to train.resume may come from anywhere: reading it must never run pickled code."""

from __future__ import annotations

import pickle
import shutil

import pytest

from pipelines.cli import main as mmcl
from tests.train_fixtures import overrides, shape_shards


class _Payload:
    """Unpickling this would create `marker`: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _train(shards, out, *extra) -> int:
    """`mmcl train` in this process (as the console script runs it): its exit code."""
    return mmcl(["train", "configs/demo.yaml",
                 *overrides(shards, out, **{"train.steps": 2, "train.checkpoint_every": 2}), *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    shards = shape_shards(root / "shards", num_shards=2, per_shard=16)
    assert _train(shards, root / "run") == 0
    return shards, root / "run" / "checkpoints" / "step-00000002"


def test_the_train_state_holds_no_arbitrary_pickles(finished):
    _, checkpoint = finished
    names = {p.name for p in (checkpoint / "train_state").iterdir()}
    assert "scheduler.json" in names
    assert not [n for n in names if n.startswith("custom_checkpoint")]


@pytest.mark.parametrize("planted", ["optimizer.bin", "custom_checkpoint_0.pkl"])
def test_a_planted_pickle_is_refused_without_running(finished, tmp_path, planted, capsys):
    shards, checkpoint = finished
    foreign = tmp_path / "downloaded"
    shutil.copytree(checkpoint, foreign)
    marker = tmp_path / "code-ran"
    (foreign / "train_state" / planted).write_bytes(pickle.dumps(_Payload(marker)))
    assert _train(shards, tmp_path / "run", f"train.resume={foreign}", "train.steps=4") == 2
    assert not marker.exists()
    stderr = capsys.readouterr().err
    assert str(foreign / "train_state") in stderr and ("unpickle" in stderr or planted in stderr)
