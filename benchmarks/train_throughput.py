"""Training throughput: `mmcl train` against open_clip's own trainer on identical shards, model, batch and precision.

    python benchmarks/train_throughput.py [--steps 120] [--batch-size 64] [--workers 2]

Both train the same open_clip tower configuration (mmcl's `tiny`, registered with open_clip under the name
`mmcl-tiny`) for the same steps with the CLIP loss in fp32 in one process; each reports its own samples/s per
logging window (mean over its steps), and the first window (start-up, worker spawn) is dropped from both. mmcl
runs again with `optim.fused=false` (torch's per-parameter AdamW, the kernel open_clip's trainer uses on CPU), to
show what the fused optimiser contributes, and in two local processes at the same global batch and the same
total loader workers for the scaling efficiency. Prints the figures and the ratios.
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

import webdataset as wds
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools import demo_shapes  # noqa: E402

OPEN_CLIP_ENTRY = """
import sys
import open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
main(sys.argv[2:])
"""


def write_shards(folder: Path, num_shards: int, per_shard: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for s in range(num_shards):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as writer:
            for i in range(per_shard):
                name = rng.choice(demo_shapes.classnames())
                buf = io.BytesIO()
                demo_shapes.draw(*name.split(), rng).save(buf, format="JPEG", quality=90)
                writer.write({"__key__": f"{s:04d}_{i:05d}", "jpg": buf.getvalue(), "txt": f"a photo of a {name}"})
    return str(folder / f"shard-{{000000..{num_shards - 1:06d}}}.tar")


def open_clip_model_config(folder: Path) -> Path:
    tiny = yaml.safe_load((ROOT / "mmcl" / "models" / "configs" / "tiny.yaml").read_text())
    config = {"embed_dim": tiny["embed_dim"], "vision_cfg": tiny["towers"]["image"]["cfg"],
              "text_cfg": tiny["towers"]["text"]["cfg"]}
    path = folder / "mmcl-tiny.json"
    path.write_text(json.dumps(config))
    return path


def run_open_clip(work: Path, urls: str, args, threads: int | None = None) -> list[float]:
    """open_clip's trainer; `threads` sets OMP_NUM_THREADS (None: its default, one thread per core)."""
    name = f"bench-threads-{threads or 'default'}"
    command = [
        sys.executable, "-c", OPEN_CLIP_ENTRY, str(open_clip_model_config(work)),
        "--model", "mmcl-tiny", "--train-data", urls, "--dataset-type", "webdataset",
        "--train-num-samples", str(args.steps * args.batch_size), "--epochs", "1",
        "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--precision", "fp32",
        "--lr", "1e-3", "--wd", "0.1", "--warmup", "10", "--seed", "0", "--log-every-n-steps", str(args.log_every),
        "--logs", str(work / "open_clip_logs"), "--name", name, "--save-frequency", "0",
    ]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    result = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env)
    if result.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{result.stderr[-4000:]}")
    log = (work / "open_clip_logs" / name / "out.log").read_text()
    # "Batch (t): 0.512, 125.1/s, ...": the first figure is the window's mean step time; the samples/s beside it
    # is of the window's last step alone, so the window's rate is taken from the mean, as mmcl's is.
    return [args.batch_size / float(v) for v in re.findall(r"Batch \(t\): ([\d.]+), [\d.]+/s,", log)]


def run_mmcl(work: Path, shard_dir: Path, args, processes: int, *extra: str) -> tuple[list[float], list[float]]:
    out = work / f"mmcl_{processes}p{'_'.join(extra)}"
    command = [
        sys.executable, "-m", "pipelines.cli", "train", "--num-processes", str(processes), "configs/demo.yaml",
        f"data.train_shards={shard_dir}", f"data.batch_size={args.batch_size // processes}",
        f"data.num_workers={max(1, args.workers // processes)}", f"train.steps={args.steps}", f"train.log_every={args.log_every}",
        f"train.output_dir={out}", "train.trackers=[]", "optim.grad_clip_norm=null", "optim.warmup_steps=10",
        "optim.lr=1e-3", "optim.weight_decay=0.1", *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"mmcl train failed:\n{result.stderr[-4000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["samples_per_s"] for r in records], [r["data_wait_fraction"] for r in records]


def steady(values: list[float]) -> float:
    return statistics.median(values[1:]) if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        urls = write_shards(work / "shards", args.shards, args.per_shard)
        oc = run_open_clip(work, urls, args)
        # mmcl gives compute the cores its loader workers leave free; the same thread budget for open_clip:
        oc_matched = run_open_clip(work, urls, args, threads=max(1, (os.cpu_count() or 1) - args.workers))
        ours, waits = run_mmcl(work, work / "shards", args, processes=1)
        unfused, _ = run_mmcl(work, work / "shards", args, 1, "optim.fused=false")  # open_clip's AdamW kernel
        ours2, _ = run_mmcl(work, work / "shards", args, processes=2)

    oc_sps, oc_matched_sps, our_sps, our2_sps = steady(oc), steady(oc_matched), steady(ours), steady(ours2)
    unfused_sps = steady(unfused)
    print(f"model mmcl tiny (open_clip towers), fp32, batch {args.batch_size}, {args.workers} workers, "
          f"{args.steps} steps, median samples/s over logging windows after the first")
    print(f"open_clip_train.main, 1 process : {oc_sps:8.1f} samples/s   (its default threads)")
    print(f"open_clip_train.main, matched   : {oc_matched_sps:8.1f} samples/s   (OMP_NUM_THREADS = mmcl's choice)")
    print(f"mmcl train, 1 process           : {our_sps:8.1f} samples/s   ratio vs open_clip {our_sps / oc_sps:.2f}x "
          f"(default threads), {our_sps / oc_matched_sps:.2f}x (matched threads)")
    print(f"mmcl, optim.fused=false         : {unfused_sps:8.1f} samples/s   ratio vs open_clip "
          f"{unfused_sps / oc_sps:.2f}x (default threads), {unfused_sps / oc_matched_sps:.2f}x (matched threads)")
    print(f"mmcl data-wait fraction         : {statistics.median(waits[1:]):.3f} of step time (median)")
    print(f"mmcl train, 2 processes         : {our2_sps:8.1f} samples/s   scaling vs 1 process "
          f"{our2_sps / our_sps:.2f}x (efficiency {our2_sps / (2 * our_sps):.0%})")


if __name__ == "__main__":
    main()
