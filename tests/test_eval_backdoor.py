"""Evaluation task `backdoor`: the attack success rate of a trigger, beside the clean accuracy and the rate at which
clean images already land on the target class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from data_tools import demo_shapes
from mmcl.data.triggers import TriggerSpec, pattern
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, run_tasks

NAMES = demo_shapes.classnames()
TARGET = "red circle"
PATCH = pattern(TriggerSpec(kind="patch", patch_size=8, seed=5), (64, 64))


class Stub(nn.Module):
    """Text: the class a prompt names. Image: `answer(top-left 8x8 pixels)` as a class, one-hot."""

    modalities = ["image", "text"]

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        classes = inputs if modality == "text" else torch.tensor([self.answer(x) for x in inputs])
        return F.one_hot(classes, len(NAMES)).float()


def tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([next(i for i, n in enumerate(NAMES) if n in t) for t in texts])


def corner(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"))[:8, :8].copy())


def evaluate(folders, answer, **trigger) -> dict:
    config = EvalConfig.model_validate({"bootstrap": {"samples": 200}, "tasks": [
        {"type": "backdoor", "data": {"path": str(folders)}, "target": TARGET, "templates": ["a photo of a {c}."],
         "trigger": {"kind": "patch", "patch_size": 8, "seed": 5, **trigger}}]})
    (result,) = run_tasks(Stub(answer), {"image": corner}, tokenizer, config.tasks, bootstrap=config.bootstrap).values()
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return demo_shapes.write_class_folders(tmp_path_factory.mktemp("eval"), per_class=2, seed=6)


def test_a_model_that_always_or_never_answers_the_target(folders):
    always = evaluate(folders, lambda x: NAMES.index(TARGET))["metrics"]
    assert always["attack_success_rate"] == 1.0 and always["clean_target_rate"] == 1.0
    assert always["num_attacked"] == 22 and always["num_samples"] == 24  # the 2 target images are not attacked
    never = evaluate(folders, lambda x: NAMES.index("blue square"))["metrics"]
    assert never["attack_success_rate"] == 0.0 and never["clean_target_rate"] == 0.0


def test_the_trigger_is_the_patch_at_the_given_place(folders):
    # Answers the target exactly when the top-left 8x8 pixels are the trigger's: only triggered images do.
    other = NAMES.index("blue square")
    result = evaluate(folders, lambda x: NAMES.index(TARGET) if (x.numpy() == PATCH).all() else other,
                      position=[0, 0])
    m = result["metrics"]
    assert m["attack_success_rate"] == 1.0 and m["clean_target_rate"] == 0.0
    assert m["clean_top1"] == pytest.approx(2 / 24)  # "blue square" answered for every clean image
    assert result["intervals"]["attack_success_rate"] == [1.0, 1.0]
    assert list(result["trigger"]["position"]) == [0, 0]


def test_mistakes_are_named(folders):
    with pytest.raises(UserError, match="target 'purple hexagon' is not one of the class names"):
        config = EvalConfig.model_validate({"tasks": [{"type": "backdoor", "data": {"path": str(folders)},
                                                       "target": "purple hexagon"}]})
        run_tasks(Stub(lambda x: 0), {"image": corner}, tokenizer, config.tasks)


def test_a_real_model_through_mmcl_eval_with_a_report(folders, tmp_path, capsys):
    import yaml

    from pipelines.cli import main as mmcl

    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"tasks": [
        {"type": "backdoor", "name": "patch-attack", "data": {"path": str(folders)}, "target": TARGET}]}))
    assert mmcl(["eval", "tiny", "--tasks", str(tmp_path / "suite.yaml"), "--report-dir", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "patch-attack: attack success rate" in printed and "clean top-1" in printed
    assert "attack_success_rate" in (tmp_path / "r" / "summary.md").read_text()
