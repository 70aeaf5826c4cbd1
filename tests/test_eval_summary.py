"""What people read: the console headline and Markdown summary state the rates a number is read against
(uniform chance, the majority class, random retrieval), counts read as integers, and skipped items are one line."""

from __future__ import annotations

import json

import pytest

from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.summary import headline, markdown, skipped
from pipelines.cli import main as mmcl
from tests.test_eval_audio import one_thread, tone_model, write_tones  # noqa: F401 (one_thread: autouse fixture)


@pytest.fixture(scope="module")
def unbalanced(tmp_path_factory):
    """Tones: 4 high, 2 low, 1 middle; and a manifest of the 7 clips with captions plus 3 image-only rows."""
    root = write_tones(tmp_path_factory.mktemp("unbalanced") / "folders")
    for path in [*sorted((root / "low").iterdir())[2:], *sorted((root / "middle").iterdir())[1:]]:
        path.unlink()
    rows = [{"audio": str(p.relative_to(root)), "text": f"a {p.parent.name} tone"} for p in sorted(root.rglob("*.wav"))]
    rows += [{"image": f"photo_{i}.jpg", "text": "a photo"} for i in range(3)]
    (root / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def run(task: dict) -> dict:
    model, transforms, tokenizer = tone_model()
    return evaluate_task(model, transforms, tokenizer, EvalConfig.model_validate({"tasks": [task]}).tasks[0]).result


def test_classification_states_uniform_chance_and_the_majority_class(unbalanced):
    result = run({"type": "zeroshot_classification", "modality": "audio", "data": {"path": str(unbalanced)}})
    m = result["metrics"]
    assert m["class_counts"] == [4, 2, 1] and m["num_samples"] == 7
    assert m["chance_top1"] == pytest.approx(1 / 3) and m["majority_top1"] == pytest.approx(4 / 7)
    rates = "uniform chance 0.3333 (1/3 classes), majority class 0.5714 (always answering 'high': 4 of 7 items)"
    assert headline(result).endswith(f"; {rates}")
    summary = markdown([result], "tones")
    assert f"\nU{rates[1:]}.\n" in summary
    assert "| num_samples | 7 |" in summary and "| num_classes | 3 |" in summary  # counts, not 7.0000
    assert "| majority_top1 | 0.5714 |" in summary
    assert "Lowest per-class accuracy: high 1.000 (n=4), low 1.000 (n=2), middle 1.000 (n=1)" in summary


def test_retrieval_states_its_chance_and_skipped_items_in_one_line(unbalanced):
    result = run({"type": "retrieval", "modalities": ["audio", "text"],
                  "data": {"path": str(unbalanced / "clips.jsonl")}})
    assert result["metrics"]["chance_recall@1"] == pytest.approx(1 / 7)
    assert headline(result).endswith("; retrieval chance: recall@1 0.1429 (1/7 items)")
    assert skipped(result) == "skipped 3 of 10 items: 3 no audio"
    summary = markdown([result], "tones")
    assert "\nSkipped 3 of 10 items: 3 no audio.\n" in summary
    assert "\nRetrieval chance: recall@1 0.1429 (1/7 items).\n" in summary


def test_the_console_names_skipped_items_once_per_task(unbalanced, capsys):
    assert mmcl(["eval", "tiny-audio", "--data", str(unbalanced / "clips.jsonl"), "--task", "retrieval",
                 "--modalities", "audio", "text"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if "skipped" in line] == [
        "retrieval/audio-text: skipped 3 of 10 items: 3 no audio"]
    assert printed[0].endswith("; retrieval chance: recall@1 0.1429 (1/7 items)")


def test_nothing_skipped_prints_no_skip_line(unbalanced):
    result = run({"type": "zeroshot_classification", "modality": "audio", "data": {"path": str(unbalanced)}})
    assert skipped(result) is None and "kipped" not in markdown([result], "tones")
