"""`mmcl demo`, shortened: the emoji dataset through shards, training, evaluation and the report.

The run trains the from-scratch config; `--compare`'s second config is checked to build its locked pretrained text
tower, and the report's side-by-side table is checked with two columns, without a second training and evaluation
(half a minute of the suite)."""

from __future__ import annotations

import json

import pytest

from data_tools.demo_emoji import build_emoji_dataset
from mmcl.config import load_config
from mmcl.models import create_model
from mmcl.training.config import PretrainConfig
from pipelines.demo import RUNS, minilm_path, prepare_shards, report, run_demo

SHORT = dict(steps=4, languages=("en",), max_emoji=300)  # the report's shape is under test, not learning


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, **SHORT)


def test_the_model_is_reported_beside_chance(demo):
    out, runs = demo
    assert list(runs) == ["scratch"]
    for run in runs.values():
        metrics = [row["metric"] for row in run["headlines"]]
        assert metrics == ["image→text R@1", "text→image R@1", "audio→text R@1", "text→audio R@1",
                           "image→audio R@1", "audio→image R@1", "subgroup-from-image top-1",
                           "subgroup-from-audio top-1"]
        assert all(0 <= row["value"] <= 1 and 0 < row["chance"] < 1 for row in run["headlines"])
        assert all(row["interval"][0] <= row["value"] <= row["interval"][1] for row in run["headlines"])
        assert run["steps"] == SHORT["steps"]
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| image→text R@1 |" in report and "× chance" in report
    first = runs["scratch"]["headlines"][0]
    assert f"{first['value']:.3f} [{first['interval'][0]:.3f}, {first['interval'][1]:.3f}]" in report
    assert "percentile-bootstrap interval over the held-out items" in report
    assert json.loads((out / "report" / "results.json").read_text())["runs"].keys() == runs.keys()
    for name in runs:
        assert (out / "report" / name / "summary.md").is_file()
        assert any((out / "report" / name).glob("*.png"))


def test_compare_reports_both_models_side_by_side(demo, tmp_path):
    out, runs = demo
    summary = json.loads((out / "report" / "results.json").read_text())["dataset"]
    halved = {**runs["scratch"],
              "headlines": [{**row, "value": row["value"] / 2} for row in runs["scratch"]["headlines"]]}
    table = report({"scratch": runs["scratch"], "minilm": halved}, tmp_path, summary).read_text(encoding="utf-8")
    header = next(line for line in table.splitlines() if line.startswith("| metric"))
    assert header == "| metric | chance | scratch | minilm |"
    first = runs["scratch"]["headlines"][0]
    row = next(line for line in table.splitlines() if line.startswith(f"| {first['metric']} |"))
    assert row.count("× chance") == 2 and f"{first['value'] / 2:.3f}" in row.split("|")[4]


def test_the_compare_config_builds_a_locked_pretrained_minilm_text_tower(tmp_path):
    config = load_config(PretrainConfig, RUNS["minilm"][0], [f"data.train_shards={tmp_path}",
                                                             f"model.towers.text.path={minilm_path()}"])
    model, _, _ = create_model(config.model)
    text = model.towers["text"]
    assert not any(p.requires_grad for p in text.encoder.parameters())
    assert any(p.requires_grad for p in model.towers["image"].parameters())


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
