"""Evaluation shared by two gloo processes (each embeds its share of the parts; all gather) gives exactly the
one-process results: metrics, skip counts and caption ownership alike."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import torch.distributed as dist
import webdataset as wds

from data_tools import demo_shapes
from mmcl.eval import run_tasks
from mmcl.eval import EvalConfig
from mmcl.models import create_model, save_model
from pipelines.cli import main as mmcl
from tests.forked import run_forked
from tests.train_fixtures import shape_shards

WORLD = 2


def tasks(shards, folders) -> list:
    return EvalConfig.model_validate({"tasks": [
        {"type": "retrieval", "data": {"path": str(shards)}},
        {"type": "geometry", "data": {"path": str(shards)}},
        {"type": "zeroshot_classification", "data": {"path": str(folders)},
         "templates": list(demo_shapes.EVAL_TEMPLATES)},
    ]}).tasks


def evaluate(shards, folders, rank: int = 0, world_size: int = 1) -> dict:
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny")
    results = run_tasks(model, transforms.eval, tokenizer, tasks(shards, folders), batch_size=16, num_workers=1,
                        rank=rank, world_size=world_size)
    for result in results.values():
        result.pop("versions")
    return results


def _worker(rank, shards, folders, result_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = evaluate(shards, folders, rank, WORLD)
        with open(f"{result_path}.{rank}", "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_one_process_results(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=3, per_shard=20)
    with wds.TarWriter(str(shards / "shard-000003.tar")) as writer:  # a fourth part, with one broken sample
        writer.write({"__key__": "broken", "jpg": b"not a jpeg", "txt": "a photo of nothing"})
    # 264 items: two parts of a file list, so each process has one.
    folders = demo_shapes.write_class_folders(tmp_path / "folders", per_class=22, seed=1)
    run_forked(_worker, (str(shards), str(folders), str(tmp_path / "results")), WORLD)
    shared = [json.loads((tmp_path / f"results.{rank}").read_text()) for rank in range(WORLD)]
    alone = json.loads(json.dumps(evaluate(shards, folders)))
    assert shared[0] == alone and shared[1] == alone
    retrieval = next(r for r in alone.values() if r["task"] == "retrieval")
    assert sum(retrieval["dataset"]["skipped"].values()) == 1  # the broken sample, skipped and counted once


def test_mmcl_eval_under_torchrun_writes_the_one_process_result(tmp_path):
    shards = shape_shards(tmp_path / "shards", num_shards=3, per_shard=20)
    torch.manual_seed(0)
    save_model(create_model("tiny")[0], tmp_path / "model")
    flags = ["eval", str(tmp_path / "model"), "--data", str(shards), "--task", "retrieval", "--num-workers", "1"]
    assert mmcl([*flags, "--output", str(tmp_path / "alone.json")]) == 0  # one process: this one
    shared = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "pipelines.cli", *flags, "--output", str(tmp_path / "shared.json")],
                            capture_output=True, text=True, timeout=300)
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert json.loads((tmp_path / "shared.json").read_text()) == json.loads((tmp_path / "alone.json").read_text())
    assert shared.stdout.count("retrieval/image-text:") == 1  # printed once, by the main process
