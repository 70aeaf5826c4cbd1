"""Run-folder hygiene: a config that would train a modality on nothing and missing inputs fail before the folder is
made; a fresh start sets an interrupted attempt's logs aside; Ctrl-C says how to continue; resuming without a
checkpoint points at --resume auto."""

from __future__ import annotations

import json
import logging
import shlex

import pytest

from mmcl.config import load_config
from mmcl.errors import UserError
from mmcl.training import checkpoints, preflight
from mmcl.training.config import PretrainConfig
from pipelines import pretrain
from pipelines.cli import main as mmcl
from pipelines.cli import run_guarded
from tests.train_fixtures import overrides, shape_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shape_shards(tmp_path_factory.mktemp("shards"), num_shards=1, per_shard=24)


def _config(shards, out, *extra, **values) -> PretrainConfig:
    return load_config(PretrainConfig, "configs/demo.yaml", overrides(shards, out, **values) + list(extra))


def test_a_modality_no_loss_term_uses_is_refused_before_the_run_folder_is_made(shards, tmp_path):
    out = tmp_path / "run"
    three = ["model=tiny-audio", "data.modalities=[image, text, audio]"]
    with pytest.raises(UserError) as refused:
        pretrain.train(_config(shards, out, *three, **{"train.steps": 2}))
    message = str(refused.value)
    assert "data.modalities lists audio, which no loss term uses (clip on image-text)" in message
    assert "'loss=[{name: pairwise}]'" in message and "{name: clip, options: {modalities: [audio, image]}}" in message
    assert not out.exists()
    preflight.check_compatible(_config(shards, out, *three, "loss=[{name: pairwise}]"))  # every pair: all trained
    preflight.check_compatible(_config(shards, out, *three, "loss=[{name: clip}, {name: clip, options: "
                                                            "{modalities: [audio, text]}}]"))


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_missing_training_shards_fail_before_the_run_folder_is_made(tmp_path, where):
    folder = tmp_path / "shards"
    if where == "empty":
        folder.mkdir()
    with pytest.raises(UserError, match="shard not found" if where == "missing" else "holds no .tar shards"):
        pretrain.train(_config(folder, tmp_path / "run", **{"train.steps": 2}))
    assert not (tmp_path / "run").exists()


def test_a_fresh_start_sets_an_interrupted_attempts_logs_aside(shards, tmp_path, caplog):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000002.tmp").mkdir(parents=True)  # killed during its first save
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 8.0}\n')
    (out / "config.yaml").write_text("the earlier attempt's config\n")
    with caplog.at_level(logging.WARNING, logger="mmcl.train"):
        pretrain.train(_config(shards, out, **{"train.steps": 2, "data.num_workers": 0}))
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    (old_metrics,) = out.glob("metrics.*.jsonl")
    assert old_metrics.read_text() == '{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 8.0}\n'
    (old_config,) = out.glob("config.*.yaml")
    assert old_config.read_text() == "the earlier attempt's config\n"
    assert "train:" in (out / "config.yaml").read_text()  # this run's config is the run's first
    assert f"metrics.jsonl -> {old_metrics.name}" in caplog.text


class InterruptedRecipe(pretrain.PretrainRecipe):
    """Ctrl-C while the loader fetches the batch of step 3 (after the checkpoint of step 2)."""

    def epoch_loader(self, epoch: int):
        for index, batch in enumerate(super().epoch_loader(epoch)):
            if index == 2:
                raise KeyboardInterrupt
            yield batch


def test_ctrl_c_names_the_last_checkpoint_and_a_resume_command_that_works(shards, tmp_path, caplog, capsys):
    out = tmp_path / "run"
    argv = ["configs/demo.yaml", *overrides(shards, out, **{"train.steps": 4, "train.checkpoint_every": 2,
                                                            "data.num_workers": 0, "data.modalities": "[image, text]"})]
    with caplog.at_level(logging.WARNING, logger="mmcl.train"):
        assert run_guarded(pretrain.main, argv, InterruptedRecipe) == 130
    assert "mmcl: interrupted" in capsys.readouterr().err
    (message,) = [m for m in caplog.messages if m.startswith("interrupted")]
    assert f"the last complete checkpoint is {out / 'checkpoints' / 'step-00000002'} (step 2)" in message
    command = message.split("continue with: ")[1]
    assert command.startswith("mmcl train configs/demo.yaml ") and command.endswith(" --resume latest")
    assert "'data.modalities=[image, text]'" in command  # quoted for the shell
    assert mmcl(shlex.split(command)[1:]) == 0
    assert (out / "checkpoints" / "step-00000004").is_dir()


def test_resuming_a_run_without_a_checkpoint_points_at_resume_auto(tmp_path):
    with pytest.raises(UserError, match=r"no complete checkpoint in .*--resume auto"):
        checkpoints.resolve_resume("latest", tmp_path / "checkpoints")
