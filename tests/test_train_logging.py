"""What a run reports: every metrics line's fields against their definitions, TensorBoard events, decode failures
counted rather than fatal, and the temperature parameter kept inside its bound."""

from __future__ import annotations

import json
import logging
import math

import pytest
import webdataset as wds
import yaml
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmcl.config import load_config
from mmcl.optim import lr_factor
from pipelines.pretrain import train
from mmcl.training.config import PretrainConfig
from tests.train_fixtures import overrides, shape_shards

STEPS, BATCH, LR = 6, 8, 2e-3


def test_metrics_lines_tensorboard_failures_and_temperature_bound(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mmcl.train")
    shards = shape_shards(tmp_path / "shards", num_shards=1, per_shard=40)
    with wds.TarWriter(str(shards / "shard-000001.tar")) as writer:  # one sample whose image cannot decode
        writer.write({"__key__": "broken", "jpg": b"not a jpeg", "txt": "a photo of nothing"})
    model = yaml.safe_load(open("mmcl/models/configs/tiny.yaml"))
    # Start the temperature above its bound: the loop must pull the parameter back, not only clamp its use.
    model.update(logit_scale_init=math.log(100.0) + 1.0, logit_scale_max=100.0)
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, "configs/demo.yaml", overrides(shards, out, **{
        "model": json.dumps(model), "train.steps": STEPS, "data.batch_size": BATCH, "data.num_workers": 0,
        "optim.lr": LR, "optim.warmup_steps": 2, "train.log_every": 2, "train.trackers": "[tensorboard]",
    }))
    checkpoint = train(cfg)
    assert f"global batch {BATCH} = {BATCH} per process x 1 micro-batch(es) x 1; steps 1 to {STEPS}, " \
           f"{STEPS * BATCH} samples" in caplog.text  # the run's shape, stated once at the start

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6]
    for r in lines:
        assert r["samples_seen"] == r["step"] * BATCH
        assert r["loss"] == pytest.approx(r["clip/image-text"])  # the one term, weight 1
        assert r["lr"] == pytest.approx(LR * lr_factor(r["step"], STEPS, cfg.optim))  # after step's scheduler tick
        assert r["logit_scale"] == pytest.approx(100.0, rel=1e-4)  # exp of the bound
        assert r["samples_per_s"] > 0 and r["samples_per_s_per_process"] == r["samples_per_s"]
        assert 0.0 <= r["data_wait_fraction"] <= 1.0
        assert -4.0 <= r["geometry/uniformity/image"] <= 0.0 and -4.0 <= r["geometry/uniformity/text"] <= 0.0
        assert 0.0 <= r["geometry/gap/image-text"] <= 2.0
    # The broken sample is counted (by reason) as soon as its shard is read, and training goes on.
    assert lines[-1]["decode_failures"] == 1
    assert sum(v for k, v in lines[-1].items() if k.startswith("decode_failures/")) == 1
    assert load_file(checkpoint / "model.safetensors")["logit_scale"].item() == pytest.approx(math.log(100.0))

    events = EventAccumulator(str(next((out / "tensorboard").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [2, 4, 6]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in lines])
