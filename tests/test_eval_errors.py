"""Bad evaluation input is a clear error naming the file or what is missing, never a wrong number."""

from __future__ import annotations

import shutil
import tarfile

import pytest

from data_tools.prepare import prepare_shards
from mmcl.config import ConfigError, load_config
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task
from pipelines.cli import main as mmcl
from tests.test_eval_audio import audio_task, one_thread, tone_model, write_tones  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def tone_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone_errors")
    prepare_shards(write_tones(root / "folders", per_class=2), root / "shards", layout="class_folders",
                   shard_size=3, progress=False)
    return root


def run(task):
    model, transforms, tokenizer = tone_model()
    return evaluate_task(model, transforms, tokenizer, task)


@pytest.mark.parametrize("names, message", [
    (["high", "low", "middle", "hiss"], "lists 4 class names but the data's labels use only 3"),
    (["high", "low"], "lists 2 class names but the data holds label 2"),
])
def test_classnames_that_disagree_with_the_labels(tone_shards, tmp_path, names, message):
    shards = shutil.copytree(tone_shards / "shards", tmp_path / "shards")
    (shards / "classnames.txt").write_text("\n".join(names) + "\n")
    with pytest.raises(UserError, match=f"{shards / 'classnames.txt'}: {message}"):
        run(audio_task(shards))


def test_extra_class_names_are_accepted_when_asked_for(tone_shards, tmp_path):
    shards = shutil.copytree(tone_shards / "shards", tmp_path / "shards")
    (shards / "classnames.txt").write_text("high\nlow\nmiddle\nhiss\n")
    result = run(audio_task(shards, allow_missing_classes=True)).result
    assert result["metrics"]["num_classes"] == 4 and result["metrics"]["per_class_recall"][3] is None
    assert result["metrics"]["mean_per_class_recall"] == 1.0  # over the three classes that have samples


def test_model_without_the_needed_tower_via_the_cli(tone_shards, capsys):
    assert mmcl(["eval", "tiny", "--data", str(tone_shards / "shards"), "--modality", "audio"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "zero-shot audio classification needs the model to have audio tower(s); it has image, text" in err


def test_empty_datasets(tone_shards, tmp_path):
    (tmp_path / "folders" / "cat").mkdir(parents=True)
    (tmp_path / "folders" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=f"{tmp_path / 'folders'}: no samples found"):
        run(audio_task(tmp_path / "folders"))

    empty = tmp_path / "empty"
    empty.mkdir()
    tarfile.open(empty / "shard-000000.tar", "w").close()
    (empty / "classnames.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match=f"{empty}: no usable samples with audio and a label \\(it holds no samples\\)"):
        run(audio_task(empty))


def test_samples_without_labels_are_counted_in_the_error(tone_shards, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    prepare_shards(tone_shards / "folders", unlabelled, layout="folder", progress=False)  # no cls entries
    (unlabelled / "classnames.txt").write_text("high\nlow\nmiddle\n")
    with pytest.raises(UserError, match=f"{unlabelled}: no usable samples with audio and a label \\(6 no label\\)"):
        run(audio_task(unlabelled))


def test_bad_templates_and_unknown_task_keys(tone_shards, tmp_path):
    with pytest.raises(UserError, match="every template needs a \\{c\\} placeholder; bad: 'a sound'"):
        run(audio_task(tone_shards / "folders", templates=["a sound"]))
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - type: retrieval\n    data: {path: x}\n    modalites: [image, text]\n")
    with pytest.raises(ConfigError, match=f"{tasks}.*tasks.0.retrieval.modalites: unknown key"):
        load_config(EvalConfig, tasks)
    tasks.write_text("tasks:\n  - type: retrieval\n    data: {path: x}\n    modalities: [image, image]\n")
    with pytest.raises(ConfigError, match="tasks.0.retrieval.modalities: Value error, the modalities must differ"):
        load_config(EvalConfig, tasks)
