"""Training throughput: `mmcl train` against open_clip's own trainer on identical shards, model, batch and precision.

    python benchmarks/train_throughput.py [--model tiny|small ...] [--steps 80] [--batch-size 64] [--workers 2]

For each model (`tiny`, and `small`, a model of realistic proportions: see benchmarks/peer_models.py) both trainers
train the same open_clip towers for the same steps with the CLIP loss in fp32 in one process; each reports its own
samples/s per logging window, and the first window (start-up, worker spawn) is dropped from both. Rows:
open_clip_train.main (its default threads); mmcl with its default CPU thread count and with each explicit count
(the loader workers' cores left free, or all cores), to check the default picks the faster; mmcl with image patch
dropout 0.5, with torch.compile, and with both; two local processes at the same global batch and loader workers.
Each row's ratio is against open_clip measured in the same run. The last lines give the default row's achieved
FLOP/s (counted forward + backward FLOPs per sample x samples/s) as a fraction of a matmul peak measured here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import webdataset as wds
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.flops import measured_matmul_peak, model_flops_per_sample  # noqa: E402
from benchmarks.peer_models import (OPEN_CLIP_ENTRY, mmcl_model_config, open_clip_name,  # noqa: E402
                                    register_open_clip)
from data_tools import demo_shapes  # noqa: E402
from mmcl.models import create_model  # noqa: E402

CORES = len(os.sched_getaffinity(0))


def write_shards(folder: Path, num_shards: int, per_shard: int, size: int = 128) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for s in range(num_shards):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as writer:
            for i in range(per_shard):
                name = rng.choice(demo_shapes.classnames())
                buf = io.BytesIO()
                demo_shapes.draw(*name.split(), rng, size=size).save(buf, format="JPEG", quality=90)
                writer.write({"__key__": f"{s:04d}_{i:05d}", "jpg": buf.getvalue(), "txt": f"a photo of a {name}"})
    return str(folder / f"shard-{{000000..{num_shards - 1:06d}}}.tar")


def run_open_clip(work: Path, config: Path, model: str, urls: str, args) -> list[float]:
    name = f"open_clip-{model}"
    command = [
        sys.executable, "-c", OPEN_CLIP_ENTRY, str(config), "--model", open_clip_name(model),
        "--train-data", urls, "--dataset-type", "webdataset",
        "--train-num-samples", str(args.steps * args.batch_size), "--epochs", "1",
        "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", "fp32",
        "--lr", "1e-3", "--wd", "0.1", "--warmup", "10", "--seed", "0", "--log-every-n-steps", str(args.log_every),
        "--logs", str(work / "open_clip_logs"), "--name", name, "--save-frequency", "0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{result.stderr[-4000:]}")
    log = (work / "open_clip_logs" / name / "out.log").read_text()
    # "Batch (t): 0.512, 125.1/s, ...": the first figure is the window's mean step time; the samples/s beside it
    # is of the window's last step alone, so the window's rate is taken from the mean, as mmcl's is.
    return [args.batch_size / float(v) for v in re.findall(r"Batch \(t\): ([\d.]+), [\d.]+/s,", log)]


def run_mmcl(work: Path, shard_dir: Path, model: str, args, label: str, overrides: list[str],
             processes: int = 1) -> tuple[list[float], list[float]]:
    out = work / f"mmcl-{model}-{label}"
    config = {
        "model": mmcl_model_config(model),
        "data": {"train_shards": str(shard_dir), "batch_size": args.batch_size // processes,
                 "num_workers": max(1, args.workers // processes)},
        "loss": [{"name": "clip"}],
        "optim": {"lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 10, "grad_clip_norm": None},
        "train": {"steps": args.steps, "log_every": args.log_every, "output_dir": str(out), "trackers": []},
    }
    path = work / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "pipelines.cli", "train", "--num-processes", str(processes), str(path),
               *overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"mmcl train ({label}) failed:\n{result.stderr[-4000:]}")
    records = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    return [r["samples_per_s"] for r in records], [r["data_wait_fraction"] for r in records]


def training_flops_per_sample(model: str, batch_size: int) -> float:
    """Counted FLOPs of one training step per sample: the towers as mmcl builds them, a batch of their inputs."""
    torch.manual_seed(0)
    mmcl_model, _, _ = create_model(mmcl_model_config(model))
    batch = {m: tower.example_input(batch_size) for m, tower in mmcl_model.towers.items()}
    return model_flops_per_sample(mmcl_model, batch)


def steady(values: list[float]) -> float:
    return statistics.median(values[1:]) if len(values) > 1 else values[0]


def mmcl_rows(args) -> list[tuple[str, list[str], int]]:
    """(label, overrides, processes) of each mmcl row; the first is mmcl's defaults."""
    free = max(1, CORES - args.workers)
    threads = [(f"cpu_threads={n}", [f"train.cpu_threads={n}"], 1) for n in sorted({free, CORES})]
    return [("default", [], 1), *threads,
            ("patch dropout 0.5", ["model.towers.image.patch_dropout=0.5"], 1),
            ("compile", ["train.compile=true"], 1),
            ("compile + patch dropout 0.5", ["train.compile=true", "model.towers.image.patch_dropout=0.5"], 1),
            ("2 processes", [], 2)]


def benchmark(model: str, work: Path, urls: str, shard_dir: Path, args) -> None:
    config = register_open_clip(work, model)
    oc = steady(run_open_clip(work, config, model, urls, args))
    print(f"\nmodel {model}: fp32, batch {args.batch_size}, {args.workers} loader workers, {args.steps} steps, "
          f"{CORES} cores; median samples/s over logging windows after the first")
    print(f"{'trainer':38s} {'samples/s':>10s} {'vs open_clip':>13s} {'data wait':>10s}")
    print(f"{'open_clip_train.main (its defaults)':38s} {oc:10.1f} {1.0:12.2f}x {'':>10s}", flush=True)
    default_sps = None
    for label, overrides, processes in mmcl_rows(args):
        sps, waits = run_mmcl(work, shard_dir, model, args, label.replace(" ", "_").replace("+", ""), overrides,
                              processes)
        rate = steady(sps)
        default_sps = default_sps or rate
        print(f"{'mmcl ' + label:38s} {rate:10.1f} {rate / oc:12.2f}x {statistics.median(waits[1:]):10.3f}",
              flush=True)
    flops = training_flops_per_sample(model, args.batch_size)
    peak = measured_matmul_peak("cpu", torch.float32, threads=CORES)
    print(f"physical limit: {flops / 1e9:.2f} GFLOP per training sample (forward + backward, counted); mmcl default "
          f"achieves {default_sps * flops / 1e9:.1f} GFLOP/s = {default_sps * flops / peak:.1%} of this machine's "
          f"measured fp32 matmul peak ({peak / 1e9:.1f} GFLOP/s on all {CORES} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", choices=["tiny", "small"], default=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        urls = write_shards(work / "shards", args.shards, args.per_shard)
        for model in args.model:
            benchmark(model, work, urls, work / "shards", args)


if __name__ == "__main__":
    main()
