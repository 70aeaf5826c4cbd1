"""Train and test parts of one dataset (`data.split`): CLIP_benchmark's train/ and test/ shard folders, class-folder
splits and a manifest's `split` column give the same linear probe as the two parts written as separate datasets."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
import webdataset as wds

from data_tools import demo_shapes
from mmcl.config import validate
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.datasets import open_source
from mmcl.models import create_model
from tests.test_eval_audio import one_thread  # noqa: F401 (autouse)

GRID = [1e-2]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """12 shape classes as class folders: train (5 per class) and test (2 per class), and a model."""
    root = tmp_path_factory.mktemp("splits")
    demo_shapes.write_class_folders(root / "folders" / "train", per_class=5, seed=0)
    demo_shapes.write_class_folders(root / "folders" / "test", per_class=2, seed=1)
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny")
    return root, (model.eval(), transforms.eval, tokenizer)


def probe(model, train: dict, test: dict) -> dict:
    (task,) = validate(EvalConfig, {"tasks": [{"type": "linear_probe", "train_data": train, "data": test,
                                               "weight_decays": GRID}]}, "test").tasks
    result = evaluate_task(*model, task, batch_size=32).result
    return {k: result[k] for k in ("metrics", "probe")}


def write_split_shards(folders, out) -> None:
    """CLIP_benchmark's layout: OUT/train/0.tar, OUT/test/0.tar, OUT/classnames.txt."""
    names = sorted(p.name for p in (folders / "train").iterdir())
    (out).mkdir()
    (out / "classnames.txt").write_text("\n".join(n.replace("_", " ") for n in names) + "\n")
    for split in ("train", "test"):
        (out / split).mkdir()
        with wds.TarWriter(str(out / split / "0.tar")) as writer:
            for label, name in enumerate(names):
                for picture in sorted((folders / split / name).iterdir()):
                    writer.write({"__key__": f"{name}_{picture.stem}", "jpg": picture.read_bytes(),
                                  "cls": str(label).encode()})


def test_shard_class_folder_and_manifest_splits_equal_separate_datasets(parts, tmp_path):
    root, model = parts
    folders = root / "folders"
    separate = probe(model, {"path": str(folders / "train")}, {"path": str(folders / "test")})
    assert (separate["metrics"]["num_train"], separate["metrics"]["num_test"]) == (60, 24)

    by_folder = probe(model, {"path": str(folders), "split": "train"}, {"path": str(folders), "split": "test"})
    assert by_folder == separate

    write_split_shards(folders, tmp_path / "wds")
    by_shards = probe(model, {"path": str(tmp_path / "wds"), "split": "train"},
                      {"path": str(tmp_path / "wds"), "split": "test"})
    assert by_shards == separate

    # One manifest, test rows first: the split column picks the rows, the class names (label text) come from all.
    rows = [{"image": str(p), "label": p.parent.name.replace("_", " "), "split": split}
            for split in ("test", "train") for p in sorted((folders / split).glob("*/*.jpg"))]
    with open(tmp_path / "all.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    by_column = probe(model, {"path": str(tmp_path / "all.csv"), "split": "train"},
                      {"path": str(tmp_path / "all.csv"), "split": "test"})
    assert by_column == separate


def test_a_split_that_is_not_there_names_the_ones_that_are(parts, tmp_path):
    root, _ = parts
    with pytest.raises(UserError, match=r"no split folder validation/ \(splits here: test, train\)"):
        open_source(root / "folders", split="validation")
    write_split_shards(root / "folders", tmp_path / "wds")
    shutil.rmtree(tmp_path / "wds" / "test")
    with pytest.raises(UserError, match=r"no shards in its split folder test/ \(splits here: train\)"):
        open_source(tmp_path / "wds", format="shards", split="test")
    (tmp_path / "m.jsonl").write_text('{"image": "a.jpg", "label": 0, "split": "train"}\n')
    with pytest.raises(UserError, match=r"no row has split 'test' \(its splits: train\)"):
        open_source(tmp_path / "m.jsonl", split="test")
    (tmp_path / "n.jsonl").write_text('{"image": "a.jpg", "label": 0}\n')
    with pytest.raises(UserError, match="it has no split column"):
        open_source(tmp_path / "n.jsonl", split="test")


def test_mmcl_eval_split_flag_reads_that_part(parts, tmp_path):
    import json

    from pipelines.cli import main as mmcl

    root, _ = parts
    out = tmp_path / "r.json"
    assert mmcl(["eval", "tiny", "--data", str(root / "folders"), "--split", "train", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["num_samples"] == 60 and result["dataset"]["split"] == "train"
