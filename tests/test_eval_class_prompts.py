"""Class-specific prompts (CuPL): a class's text embedding is the normalised mean of its generic and own prompts."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from data_tools import demo_shapes
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, run_tasks
from mmcl.models import create_model
from pipelines.cli import main as mmcl

OWN = {"red circle": ["a round red disc on grey", "a scarlet ring filled in"],
       "blue square": ["a blue box with four equal sides"]}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return demo_shapes.write_class_folders(tmp_path_factory.mktemp("eval"), per_class=2, seed=4)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny")


def zeroshot(tiny, folders, **task):
    model, transforms, tokenizer = tiny
    config = EvalConfig.model_validate({"tasks": [{"type": "zeroshot_classification", "data": {"path": str(folders)},
                                                   **task}]})
    (result,) = run_tasks(model, transforms.eval, tokenizer, config.tasks).values()
    return result


def class_embedding(tiny, texts: list[str]) -> torch.Tensor:
    model, _, tokenizer = tiny
    with torch.no_grad():
        return F.normalize(model.encode("text", tokenizer(texts)).mean(0), dim=-1)


def test_each_class_averages_its_generic_and_own_prompts(tiny, folders):
    result = zeroshot(tiny, folders, templates=["a photo of a {c}."], class_prompts=OWN)
    names = result["classnames"]
    prompts = dict(zip(names, result["prompts"]))
    assert prompts["red circle"] == ["a photo of a red circle.", *OWN["red circle"]]
    assert prompts["green square"] == ["a photo of a green square."]
    assert result["class_prompts_source"] == "the task's class prompts"
    # The scores zero-shot used, recomputed from independently embedded prompts: same predictions.
    model, transforms, _ = tiny
    classes = torch.stack([class_embedding(tiny, prompts[name]) for name in names])
    images = sorted(folders.glob("*/*.jpg"))
    from PIL import Image

    with torch.no_grad():
        queries = model.encode("image", torch.stack([transforms.eval["image"](Image.open(p).convert("RGB"))
                                                     for p in images]))
    labels = torch.tensor([names.index(p.parent.name.replace("_", " ")) for p in images])
    top1 = ((queries @ classes.T).argmax(1) == labels).float().mean().item()
    assert result["metrics"]["top1"] == pytest.approx(top1)


def test_class_prompts_alone_and_from_a_json_file(tiny, folders, tmp_path):
    every = {name: [f"{name}, drawn flat", f"one {name}"] for name in demo_shapes.classnames()}
    (tmp_path / "cupl.json").write_text(json.dumps(every))
    result = zeroshot(tiny, folders, templates=[], class_prompts=str(tmp_path / "cupl.json"))
    assert result["prompts"] == [every[name] for name in result["classnames"]]
    assert result["class_prompts_source"] == str(tmp_path / "cupl.json")


def test_mistakes_name_the_class_or_file(tiny, folders, tmp_path):
    with pytest.raises(UserError, match=r"class prompts for \['red circel'\], which are not class names"):
        zeroshot(tiny, folders, class_prompts={"red circel": ["x"]})
    with pytest.raises(UserError, match=r"no prompt for class\(es\) \['blue circle'"):
        zeroshot(tiny, folders, templates=[], class_prompts=OWN)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not JSON"):
        zeroshot(tiny, folders, class_prompts=str(tmp_path / "bad.json"))
    (tmp_path / "flat.json").write_text(json.dumps({"red circle": "a red disc"}))
    with pytest.raises(UserError, match="flat.json: class prompts must map each class name to a list of non-empty"):
        zeroshot(tiny, folders, class_prompts=str(tmp_path / "flat.json"))
    with pytest.raises(ValueError, match="class_prompts"):  # inline, the config's types catch it
        zeroshot(tiny, folders, class_prompts={"red circle": "a red disc"})


def test_the_cli_flag_records_the_file(tiny, folders, tmp_path):
    (tmp_path / "own.json").write_text(json.dumps(OWN))
    assert mmcl(["eval", "tiny", "--data", str(folders), "--class-prompts", str(tmp_path / "own.json"),
                 "--output", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    (task,) = result if isinstance(result, list) else [result]
    assert task["class_prompts_source"] == str(tmp_path / "own.json")
    assert dict(zip(task["classnames"], task["prompts"]))["blue square"][-1] == OWN["blue square"][0]
