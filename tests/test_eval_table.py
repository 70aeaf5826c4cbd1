"""`mmcl eval MODEL... --tasks suite.yaml --table DIR`: one result per (model, task), one CSV and one Markdown table,
and `--skip-existing` keeps what is already there."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from data_tools import demo_shapes
from mmcl.models import create_model, save_model
from pipelines.cli import main as mmcl
from tests.train_fixtures import shape_shards


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    folders = demo_shapes.write_class_folders(root / "eval", per_class=2, seed=2)
    shards = shape_shards(root / "shards", num_shards=1, per_shard=16)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(str(save_model(create_model("tiny")[0], root / f"model-{seed}")))
    suite = root / "suite.yaml"
    suite.write_text(yaml.safe_dump({"bootstrap": {"samples": 100}, "tasks": [
        {"type": "zeroshot_classification", "name": "shapes", "data": {"path": str(folders)}},
        {"type": "retrieval", "data": {"path": str(shards)}}]}))
    return root, models, suite


def table_rows(folder) -> list[dict]:
    with (folder / "table.csv").open() as f:
        return list(csv.DictReader(f))


def test_every_model_and_task_lands_in_one_table(sweep):
    root, models, suite = sweep
    out = root / "table"
    assert mmcl(["eval", *models, "--tasks", str(suite), "--table", str(out)]) == 0
    rows = table_rows(out)
    assert [r["model"] for r in rows] == models
    for model, row in zip(models, rows):  # each cell is the stored result of that pair
        alone = json.loads((out / "results" / model.strip("/").replace("/", "_") / "shapes.json").read_text())
        assert float(row["shapes/top1"]) == alone["metrics"]["top1"]
        assert float(row["shapes/top1 [low]"]) == alone["intervals"]["top1"][0]
        assert row["retrieval/image-text/image_to_text/recall@1"] != ""
    markdown = (out / "table.md").read_text()
    assert markdown.splitlines()[0].startswith("| model | shapes/top1 | shapes/top5 | shapes/mean_per_class_recall")
    assert markdown.count("\n| `") == 2 and "percentile-bootstrap" in markdown


def test_skip_existing_keeps_stored_results(sweep, capsys):
    root, models, suite = sweep
    out = root / "resumed"
    assert mmcl(["eval", models[0], "--tasks", str(suite), "--table", str(out)]) == 0
    stored = out / "results" / models[0].strip("/").replace("/", "_") / "shapes.json"
    planted = json.loads(stored.read_text())
    planted["metrics"]["top1"] = 0.123456  # a value no evaluation here gives: it shows the file was kept
    stored.write_text(json.dumps(planted))
    assert mmcl(["eval", *models, "--tasks", str(suite), "--table", str(out), "--skip-existing"]) == 0
    assert "every task has a result" in capsys.readouterr().out
    rows = table_rows(out)
    assert float(rows[0]["shapes/top1"]) == 0.123456 and rows[1]["shapes/top1"] != ""
    assert mmcl(["eval", *models, "--tasks", str(suite), "--table", str(out)]) == 0  # without it: evaluated again
    assert float(table_rows(out)[0]["shapes/top1"]) != 0.123456


def test_several_models_need_a_table(sweep, capsys):
    root, models, suite = sweep
    assert mmcl(["eval", *models, "--tasks", str(suite)]) == 2
    assert "2 models make one table: give --table DIR" in capsys.readouterr().err
    assert mmcl(["eval", models[0], "--tasks", str(suite), "--skip-existing"]) == 2
    assert "--skip-existing keeps results already in a --table DIR" in capsys.readouterr().err
