"""The same data through every route scores and reads alike: class folders or shards, `mmcl eval` or a training
run's evaluation. One default template set, one default naming rule, and `--compare` pairs tasks by what they
measured when their names differ."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from data_tools import demo_shapes
from data_tools.prepare import prepare_shards
from mmcl.eval import EvalConfig, run_tasks
from mmcl.eval.report import flatten, write_json
from mmcl.models import create_model, load_model, save_model
from pipelines.cli import main as mmcl
from tests.test_eval_audio import one_thread  # noqa: F401 (an autouse fixture)

BUILT_IN_IMAGE = ["a photo of a {c}.", "a picture of a {c}.", "an image of a {c}.", "a {c}."]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 images as class folders, the same images as shards without a templates file, and a tiny model."""
    root = tmp_path_factory.mktemp("routes")
    classes = demo_shapes.write_class_folders(root / "classes", per_class=2, seed=1)
    prepare_shards(classes, root / "shards", layout="class_folders", shard_size=8, progress=False)
    assert not (root / "shards" / "zeroshot_classification_templates.txt").exists()  # written only with --templates
    torch.manual_seed(0)
    save_model(create_model("tiny")[0], root / "model")
    return root


def cli_result(data, tmp_path, capsys, *flags) -> dict:
    out = tmp_path / "result.json"
    assert mmcl(["eval", str(data / "model"), *flags, "--output", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def test_class_folders_and_shards_of_the_same_images_score_and_compare_alike(data, tmp_path, capsys):
    folders = cli_result(data, tmp_path, capsys, "--data", str(data / "classes"))
    (tmp_path / "folders.json").write_text(json.dumps(folders))
    shards = cli_result(data, tmp_path, capsys, "--data", str(data / "shards"))
    (tmp_path / "shards.json").write_text(json.dumps(shards))

    assert folders["dataset"]["format"] == "class_folders" and shards["dataset"]["format"] == "shards"
    for result in (folders, shards):
        assert result["name"] == "zeroshot_classification/image"
        assert result["templates"] == BUILT_IN_IMAGE and result["templates_source"] == "built-in image templates"
    assert shards["metrics"] == folders["metrics"]

    assert mmcl(["eval", "--compare", str(tmp_path / "folders.json"), str(tmp_path / "shards.json")]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[3:]}
    scalars = flatten(folders["metrics"])
    assert set(rows) == {f"zeroshot_classification/image/{k}" for k in scalars}  # metric by metric
    for key, value in scalars.items():
        a, b, delta = rows[f"zeroshot_classification/image/{key}"]
        assert a == b and float(delta) == 0 and delta.startswith("+"), key
        assert a == (str(value) if isinstance(value, int) else f"{value:.4f}"), key  # counts as integers


def test_a_datasets_own_templates_file_wins_and_is_recorded(data, tmp_path, capsys):
    shards = tmp_path / "shards"
    prepare_shards(data / "classes", shards, layout="class_folders", shard_size=8, progress=False,
                   templates=["a drawing of a {c}."])
    result = cli_result(data, tmp_path, capsys, "--data", str(shards))
    assert result["templates"] == ["a drawing of a {c}."]
    assert result["templates_source"] == (f"the dataset's templates file "
                                          f"{shards / 'zeroshot_classification_templates.txt'}")
    given = demo_shapes.write_templates(tmp_path / "mine.txt")
    result = cli_result(data, tmp_path, capsys, "--data", str(shards), "--templates", str(given))
    assert result["templates"] == list(demo_shapes.EVAL_TEMPLATES)
    assert result["templates_source"] == f"templates file {given}"


def test_a_training_runs_differently_named_task_is_paired_by_task_and_data(data, tmp_path, capsys):
    cli = cli_result(data, tmp_path, capsys, "--data", str(data / "classes"), "--name", "shapes-cli")
    assert cli["name"] == "shapes-cli"
    write_json(cli, tmp_path / "cli.json")

    # What a training run writes to OUTPUT/eval/step-N.json: results keyed by the names in its config.
    model, transforms, tokenizer = load_model(data / "model")
    (tmp_path / "names.txt").write_text("".join(f"{n}\n" for n in demo_shapes.classnames()[::-1]))
    tasks = EvalConfig.model_validate({"tasks": [
        {"type": "zeroshot_classification", "name": "mine", "data": {"path": str(data / "shards")}},
        # The same items under other class names: other data, so not a partner for `shapes-cli`.
        {"type": "zeroshot_classification", "name": "other-names",
         "data": {"path": str(data / "classes"), "classnames": str(tmp_path / "names.txt")}}]}).tasks
    write_json(run_tasks(model, transforms.eval, tokenizer, tasks), tmp_path / "step-00000010.json")

    assert mmcl(["eval", "--compare", str(tmp_path / "cli.json"), str(tmp_path / "step-00000010.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[2] == ("paired by task and data: A 'shapes-cli' with B 'mine' (zeroshot_classification on "
                          "image, 24 items, 12 classes)")
    top1 = next(line for line in printed if line.startswith("shapes-cli/top1 "))
    assert top1.split()[1] == top1.split()[2] == f"{cli['metrics']['top1']:.4f}"
    assert printed[-1] == "(7 metrics appear in only one file)"  # the scalars of the unpaired `other-names`


def test_tasks_on_other_data_are_not_paired(data, tmp_path, capsys):
    cli = cli_result(data, tmp_path, capsys, "--data", str(data / "classes"))
    write_json(cli, tmp_path / "a.json")
    fewer = demo_shapes.write_class_folders(tmp_path / "fewer", per_class=1, seed=1)
    cli = cli_result(data, tmp_path, capsys, "--data", str(fewer), "--name", "other")
    write_json(cli, tmp_path / "b.json")
    assert mmcl(["eval", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert ("share no metrics: no task has the same name, or the same task type and data, on both sides (A: "
            "zeroshot_classification on image, 24 items, 12 classes; B: zeroshot_classification on image, 12 items, "
            "12 classes)") in capsys.readouterr().err


def test_default_names_follow_one_rule_whatever_the_data():
    tasks = EvalConfig.model_validate({"tasks": [
        {"type": "zeroshot_classification", "modality": "audio", "data": {"path": "clips.csv"}},
        {"type": "retrieval", "modalities": ["text", "image"], "data": {"path": "shards/"}},
        {"type": "retrieval", "modalities": ["audio", "text"], "data": {"path": "shards/"}},
        {"type": "multimodal_retrieval", "modalities": ["text", "audio", "image"], "data": {"path": "a.jsonl"}},
        {"type": "geometry", "data": {"path": "folders"}},
        {"type": "geometry", "name": "mine", "data": {"path": "folders"}},
    ]}).tasks
    assert [t.label for t in tasks] == ["zeroshot_classification/audio", "retrieval/image-text",
                                        "retrieval/audio-text", "multimodal_retrieval/image-audio-text",
                                        "geometry/image-text", "mine"]


def test_two_tasks_with_one_name_are_refused_up_front():
    with pytest.raises(ValidationError, match="several tasks are named 'zeroshot_classification/image'; give each "
                                              "a distinct `name`"):
        EvalConfig.model_validate({"tasks": [{"type": "zeroshot_classification", "data": {"path": "cifar10"}},
                                             {"type": "zeroshot_classification", "data": {"path": "stl10"}}]})


def test_name_is_for_the_flags_route_only(data, tmp_path, capsys):
    (tmp_path / "tasks.yaml").write_text("tasks: []\n")
    assert mmcl(["eval", str(data / "model"), "--tasks", str(tmp_path / "tasks.yaml"), "--name", "x"]) == 2
    assert "drop --data/--split/--templates/--class-prompts/" in capsys.readouterr().err
    assert mmcl(["eval", str(data / "model"), "--tasks", str(tmp_path / "tasks.yaml"), "--split", "test"]) == 2
    assert "drop --data/--split/" in capsys.readouterr().err
