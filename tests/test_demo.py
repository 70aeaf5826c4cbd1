"""`mmcl demo`, shortened: the emoji dataset through shards, both training configs, evaluation and the report."""

from __future__ import annotations

import json

import pytest

from data_tools.demo_emoji import build_emoji_dataset
from pipelines.demo import prepare_shards, run_demo

SHORT = dict(steps=4, languages=("en",), max_emoji=300)  # the report's shape is under test, not learning


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, compare=True, **SHORT)


def test_both_models_are_reported_beside_chance(demo):
    out, runs = demo
    assert list(runs) == ["scratch", "minilm"]
    for run in runs.values():
        metrics = [row["metric"] for row in run["headlines"]]
        assert metrics == ["image→text R@1", "text→image R@1", "audio→text R@1", "text→audio R@1",
                           "image→audio R@1", "audio→image R@1", "subgroup-from-image top-1",
                           "subgroup-from-audio top-1"]
        assert all(0 <= row["value"] <= 1 and 0 < row["chance"] < 1 for row in run["headlines"])
        assert run["steps"] == SHORT["steps"]
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| image→text R@1 |" in report and "× chance" in report
    assert json.loads((out / "report" / "results.json").read_text())["runs"].keys() == runs.keys()
    for name in runs:
        assert (out / "report" / name / "summary.md").is_file()
        assert any((out / "report" / name).glob("*.png"))


def test_heldout_emoji_are_not_in_the_training_shards(demo):
    out, _ = demo
    train = {row["codepoints"] for row in map(json.loads, (out / "data" / "train.jsonl").open())}
    heldout = [json.loads(row) for row in (out / "data" / "heldout_en.jsonl").open()]
    assert heldout and not train & {row["codepoints"] for row in heldout}
    assert {row["language"] for row in heldout} == {"en"}


def test_second_run_reuses_the_dataset_and_the_shards(demo, capsys):
    """The demo's first two stages on a finished demo folder: nothing is rebuilt (training is not under test)."""
    out, _ = demo
    shard_times = {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.tar")}
    summary = build_emoji_dataset(out / "data", SHORT["languages"], max_emoji=SHORT["max_emoji"])
    assert summary["cached"]
    assert prepare_shards(out / "data", out / "shards", "en") == (out / "shards" / "train", out / "shards" / "heldout")
    assert "skipping" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.tar")} == shard_times
