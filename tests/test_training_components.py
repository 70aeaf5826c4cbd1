"""The training components alone: the non-finite guard, checkpoint bookkeeping, the metrics log, resume checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mmcl.errors import UserError
from mmcl.training import checkpoints, run_config
from mmcl.training.metrics import MetricsLogger, truncate_log
from mmcl.training.nonfinite import NonFiniteGuard


def _terms(value: float) -> tuple[torch.Tensor, dict]:
    term = torch.tensor(value)
    return term, {"clip/image-text": term}


def test_the_agreed_verdict_drives_the_step_and_the_counter():
    """This process's loss is always finite; another's is not at steps 1, 3 and 4: this process skips those too."""
    others_finite = iter([False, True, False, False])
    guard = NonFiniteGuard("skip", max_skipped=2, all_finite=lambda ok: ok and next(others_finite))
    verdicts = []
    for step in (1, 2, 3):
        verdicts.append(guard.check(step, *_terms(1.0)))
        guard.after_step()
        assert guard.step_ok == verdicts[-1]
    assert verdicts == [False, True, False] and guard.skipped_in_a_row == 1
    assert not guard.check(4, *_terms(1.0))
    with pytest.raises(FloatingPointError, match="2 non-finite steps in a row"):
        guard.after_step()


def test_halt_names_the_term_or_another_process():
    with pytest.raises(FloatingPointError, match=r"step 3: non-finite loss \(terms \['clip/image-text'\]\); halting"):
        NonFiniteGuard("halt", 10).check(3, *_terms(float("nan")))
    with pytest.raises(FloatingPointError, match="terms on another process"):
        NonFiniteGuard("halt", 10, all_finite=lambda ok: False).check(3, *_terms(1.0))


def test_write_json_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "best.json"
    checkpoints.write_json(path, {"step": 1})

    def killed(*args):
        raise KeyboardInterrupt  # the process dies between writing the new content and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.write_json(path, {"step": 2})
    assert json.loads(path.read_text()) == {"step": 1}  # still whole, still the old one


def _checkpoint(folder, marker: str):
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "marker").write_text(marker)


def test_publish_keeps_the_old_folder_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    folder = checkpoints.step_folder(tmp_path, 4)
    _checkpoint(folder, "old")
    _checkpoint(checkpoints.temporary(folder), "new")
    real_replace, calls = os.replace, []

    def second_rename_dies(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_dies)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.publish(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    # Killed between moving the old one aside and renaming the new one: neither counts as complete, nothing lost.
    assert checkpoints.complete_checkpoints(tmp_path) == []
    assert (folder.with_name(folder.name + ".old") / "model" / "marker").read_text() == "old"
    checkpoints.publish(folder)
    assert (folder / "model" / "marker").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_an_interrupted_prune_leaves_no_complete_looking_half(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        _checkpoint(checkpoints.step_folder(tmp_path, step), str(step))
    monkeypatch.setattr(checkpoints.shutil, "rmtree", lambda path: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        checkpoints.prune(tmp_path, keep_last=1, protect=set())
    monkeypatch.undo()
    assert [s for s, _ in checkpoints.complete_checkpoints(tmp_path)] == [2, 3]  # step 1 was renamed first
    checkpoints.sweep(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002", "step-00000003"]


def test_the_best_is_protected_whatever_the_spelling_of_its_path(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        _checkpoint(checkpoints.step_folder(tmp_path / "ckpt", step), str(step))
    (tmp_path / "x").mkdir()
    monkeypatch.chdir(tmp_path)
    checkpoints.prune(tmp_path / "ckpt", keep_last=1, protect={checkpoints.step_folder(tmp_path / "x/../ckpt", 1)})
    checkpoints.prune(tmp_path / "ckpt", keep_last=1, protect={checkpoints.step_folder(Path("ckpt"), 1)})
    assert [s for s, _ in checkpoints.complete_checkpoints(tmp_path / "ckpt")] == [1, 3]


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "loss": 1.0} for s in (2, 4, 6)] + [{"step": 4, "eval/x": 0.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 8, "lo')  # the kill cut the last line
    truncate_log(path, 4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4, 4]
    logger = MetricsLogger(path, lambda values, step: None, global_batch=8, world_size=1, resumed_at=2)
    logger.write({"step": 3, "loss": 0.9})
    logger.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 3]


def test_data_order_fields_are_refused_and_others_recorded(tmp_path):
    before = {"data": {"batch_size": 8, "shuffle_buffer": 16}, "train": {"seed": 0, "log_every": 1, "steps": 10,
                                                                        "resume": None}}
    after = {"data": {"batch_size": 16, "shuffle_buffer": 16}, "train": {"seed": 1, "log_every": 5, "steps": 20,
                                                                         "resume": "latest"}}
    with pytest.raises(UserError, match=r"data.batch_size: 8 -> 16; train.seed: 0 -> 1"):
        run_config.check_resumable(before, after, tmp_path / "config.yaml")
    after = {"data": before["data"], "train": {**after["train"], "seed": 0}}
    found = run_config.check_resumable(before, after, tmp_path / "config.yaml")
    assert found == {"train.log_every": [1, 5], "train.steps": [10, 20]}
    run_config.record_resume(tmp_path, 6, found)
    assert json.loads((tmp_path / "resumes.jsonl").read_text()) == {"step": 6, "changed": found}


@pytest.mark.parametrize("model_name, local_processes, expected", [
    ("tiny", "1", 6),    # 0.05 GFLOP per training sample: the 2 loader workers keep a core each
    ("small", "1", 8),   # ~1 GFLOP: compute takes every core
    ("small", "2", 4),   # two local processes: each its half
])
def test_cpu_thread_default_follows_the_models_compute(model_name, local_processes, expected, monkeypatch):
    from benchmarks.peer_models import mmcl_model_config
    from mmcl.models import create_model
    from mmcl.training.launch import default_cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    model, _, _ = create_model(mmcl_model_config(model_name))
    state = torch.random.get_rng_state()
    assert default_cpu_threads(2, model) == expected
    assert torch.equal(torch.random.get_rng_state(), state)  # the run's random state is left as it was
