"""GPU training benchmark: `mmcl train` (eager, compiled, patch dropout, both) against open_clip_train.main on
the same WebDataset shards, model (open_clip's ViT-B-32), batch, loader workers and bf16 precision.

    benchmarks/gpu/run.sh [--out DIR]           # on the GPU machine (installs from wheels/ first: README.md here)
    python benchmarks/gpu/bench.py [--out DIR]  # where mmcl, open_clip_torch and webdataset are installed
    python benchmarks/gpu/bench.py --cpu-smoke  # the same code paths on a CPU: tiny model, fp32, a few steps

Prints, and writes as results.json and results.md to --out ($OUT if set): every version involved, then per row
samples/s in the steady state (median over logging windows after the first, which holds start-up, loader spawn
and compilation), the ratio to open_clip, the fraction of step time spent waiting for data, FLOPs per sample of a
training step (forward + loss + backward, counted by benchmarks/flops.py) and the model FLOP utilisation:
samples/s × FLOPs per sample / the card's dense bf16 peak. Everything runs under one time budget (--budget-s,
8 minutes); each run has a watchdog, and a run the budget cannot fit any more is reported as skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch
import webdataset as wds
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.flops import gpu_bf16_peak, measured_matmul_peak, model_flops_per_sample, step_flops  # noqa: E402
from benchmarks.peer_models import MODELS, open_clip_name, register_open_clip  # noqa: E402
from data_tools import demo_shapes  # noqa: E402
from mmcl.config import load_config  # noqa: E402
from mmcl.errors import UserError  # noqa: E402
from mmcl.models import create_model  # noqa: E402
from mmcl.training.config import PretrainConfig  # noqa: E402

# The mmcl rows: (label, dotted overrides of the run config, also in --cpu-smoke). The smoke run has one mmcl row
# only: each costs ~20 s of start-up on a 2-core CPU, and compiling alone would take longer than the whole run.
MMCL_VARIANTS = [
    ("mmcl eager", [], True),
    ("mmcl patch dropout 0.5", ["model.towers.image.patch_dropout=0.5"], False),
    ("mmcl compile", ["train.compile=true"], False),
    ("mmcl compile + patch dropout 0.5", ["train.compile=true", "model.towers.image.patch_dropout=0.5"], False),
]
OPEN_CLIP_ROW = "open_clip_train.main"

# open_clip_train.main, after registering a model config file when argv[1] names one (the smoke run's model).
OPEN_CLIP_ENTRY = """
import sys
import open_clip
if sys.argv[1]:
    open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
main(sys.argv[2:])
"""

VERSIONED_PACKAGES = ["mmcl", "open_clip_torch", "timm", "webdataset", "accelerate", "torchvision", "numpy",
                      "pillow", "pydantic"]


@dataclass
class Settings:
    model: str  # open_clip's name for the architecture (ViT-B-32 ships with it; the smoke model is registered)
    image_px: int  # side of the JPEGs in the shards; the model's transforms crop them to its input size
    batch_size: int
    workers: int
    steps: int
    log_every: int
    mmcl_precision: str
    open_clip_precision: str
    run_timeout_s: float  # watchdog of one eager run; compiled runs get twice as long
    budget_s: float
    threads: int | None = None  # OMP_NUM_THREADS of the runs; None: each trainer's own choice


def gpu_settings(workers: int) -> Settings:
    # 120 steps of 256 in 20-step windows: five steady windows, and eager runs of well under a minute.
    return Settings("ViT-B-32", 256, 256, workers, 120, 20, "bf16", "amp_bf16", run_timeout_s=120, budget_s=480)


def smoke_settings() -> Settings:
    # One compute thread each: open_clip's default (a thread per core) beside a loader worker oversubscribes a
    # small CPU, and its busy-waiting threads then slow each step many times over.
    return Settings(open_clip_name("tiny"), 64, 16, 1, 8, 2, "fp32", "fp32", run_timeout_s=60, budget_s=120,
                    threads=1)


def open_clip_spec(settings: Settings) -> dict:
    """The architecture as an open_clip model config: embed_dim, vision_cfg, text_cfg."""
    if settings.model == open_clip_name("tiny"):
        return MODELS["tiny"]  # mmcl's tiny model, as the CPU benchmarks share it
    import open_clip

    return open_clip.get_model_config(settings.model)


def mmcl_run_config(settings: Settings, spec: dict, shards: Path, output_dir: Path) -> dict:
    """An mmcl run config with the model inline, so that variants can override model keys too."""
    return {
        "model": {"embed_dim": spec["embed_dim"], "towers": {
            "image": {"type": "open_clip_vision", "cfg": spec["vision_cfg"]},
            "text": {"type": "open_clip_text", "cfg": spec["text_cfg"]}}},
        "data": {"train_shards": str(shards), "modalities": ["image", "text"], "batch_size": settings.batch_size,
                 "num_workers": settings.workers},
        "loss": [{"name": "clip"}],
        # open_clip's defaults for its trainer (lr, weight decay), no clipping: it clips only when asked.
        "optim": {"lr": 5e-4, "weight_decay": 0.2, "warmup_steps": 10, "grad_clip_norm": None},
        "train": {"steps": settings.steps, "seed": 0, "precision": settings.mmcl_precision,
                  "output_dir": str(output_dir), "log_every": settings.log_every, "trackers": []},
    }


def write_shards(folder: Path, samples: int, shards: int, px: int) -> str:
    """Synthetic image-caption shards: demo_shapes drawings with pixel noise (so JPEG decoding costs about what a
    photo's does), drawn once into a pool and reused, since drawing every sample would take minutes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pool = []
    for _ in range(256):
        name = rng.choice(demo_shapes.classnames())
        image = Image.blend(demo_shapes.draw(*name.split(), rng, size=px),
                            Image.effect_noise((px, px), 40).convert("RGB"), 0.25)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        pool.append((name, buf.getvalue()))
    per_shard = math.ceil(samples / shards)
    for s in range(shards):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as writer:
            for i in range(per_shard):
                name, jpg = pool[rng.randrange(len(pool))]
                caption = rng.choice(demo_shapes.CAPTION_TEMPLATES).format(c=name)
                writer.write({"__key__": f"{s:06d}_{i:06d}", "jpg": jpg, "txt": caption})
    return str(folder / f"shard-{{000000..{shards - 1:06d}}}.tar")


def run_watched(command: list[str], log: Path, timeout_s: float, cwd: Path, threads: int | None) -> str:
    """Runs `command` with its output in `log`; past `timeout_s` kills it with its loader workers (its own process
    group). Returns "ok", "exit N" or "timed out after T s"."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}  # nothing may reach for the network
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"timed out after {timeout_s:.0f} s"
    return "ok" if code == 0 else f"exit {code}"


def steady(values: list[float]) -> float:
    """Median over the logging windows after the first; NaN if there is no second window."""
    return statistics.median(values[1:]) if len(values) > 1 else math.nan


def run_mmcl(settings: Settings, config: Path, overrides: list[str], out: Path, timeout_s: float) -> dict:
    command = [sys.executable, "-m", "pipelines.cli", "train", str(config), *overrides]
    # From the work folder: the mmcl that is installed runs (run.sh's wheel, or an editable checkout).
    status = run_watched(command, out.with_suffix(".log"), timeout_s, out.parent, settings.threads)
    metrics = out / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    records = [r for r in records if "samples_per_s" in r]  # evaluation lines carry no timing
    return {"status": status, "samples_per_s": steady([r["samples_per_s"] for r in records]),
            "data_wait": steady([r["data_wait_fraction"] for r in records]), "windows": len(records)}


def run_open_clip(settings: Settings, model_file: str, urls: str, work: Path, timeout_s: float) -> dict:
    name = "open_clip"
    command = [
        sys.executable, "-c", OPEN_CLIP_ENTRY, model_file, "--model", settings.model,
        "--train-data", urls, "--dataset-type", "webdataset",
        "--train-num-samples", str(settings.steps * settings.batch_size), "--epochs", "1",
        "--batch-size", str(settings.batch_size), "--workers", str(settings.workers),
        "--precision", settings.open_clip_precision, "--lr", "5e-4", "--wd", "0.2", "--warmup", "10", "--seed", "0",
        "--log-every-n-steps", str(settings.log_every), "--logs", str(work / "open_clip_logs"), "--name", name,
        "--save-frequency", "0",
    ]
    status = run_watched(command, work / "open_clip.log", timeout_s, work, settings.threads)
    log_file = work / "open_clip_logs" / name / "out.log"
    log = log_file.read_text() if log_file.is_file() else ""
    # "Data (t): 0.004 Batch (t): 0.512, 125.1/s, ...": a window's mean data wait and mean step time (the step
    # time includes the wait); the samples/s beside them is the window's last step alone, so it is not used.
    windows = [(float(d), float(b)) for d, b in re.findall(r"Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+)", log)]
    return {"status": status, "samples_per_s": steady([settings.batch_size / b for _, b in windows]),
            "data_wait": steady([d / b for d, b in windows]), "windows": len(windows)}


def versions() -> dict:
    found = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
        smi = shutil.which("nvidia-smi")
        query = [smi, "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"] if smi else None
        found["driver"] = subprocess.run(query, capture_output=True, text=True).stdout.strip() if query else None
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    found["mmcl_checkout"] = git.stdout.strip() if git.returncode == 0 else None  # a copy may come without .git
    wheel_commit = Path(__file__).parent / "wheels" / "mmcl-commit.txt"  # written by prepare.sh with the wheel
    found["mmcl_wheel"] = wheel_commit.read_text().strip() if wheel_commit.is_file() else None
    return found


# The longest caption in the shards, twice: mmcl's text tower runs only the token columns a batch uses, and a
# batch of the benchmark's size nearly always holds a caption this long, so its FLOPs are counted on these.
LONGEST_CAPTIONS = 2 * [max((t.format(c=name) for t in demo_shapes.CAPTION_TEMPLATES
                             for name in demo_shapes.classnames()), key=len)]


def mmcl_flops_per_sample(cfg: PretrainConfig) -> float:
    """Counted on the CPU with two rows: the same FLOPs per sample as on the GPU (bar the loss's B×B logits)."""
    torch.manual_seed(0)
    model, _, tokenizer = create_model(cfg.model)
    batch = {"image": model.towers["image"].example_input(2), "text": tokenizer(LONGEST_CAPTIONS)}
    return model_flops_per_sample(model, batch)


def open_clip_flops_per_sample(settings: Settings) -> float:
    """open_clip's model and loss as its trainer runs them: the text tower always over the whole context."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model(settings.model)
    size = model.visual.image_size
    images = torch.randn(2, 3, *(size if isinstance(size, tuple) else (size, size)))
    texts = open_clip.get_tokenizer(settings.model)(LONGEST_CAPTIONS)
    loss = open_clip.ClipLoss()
    return step_flops(model, lambda: loss(*model(images, texts)[:3])) / 2


def markdown(result: dict) -> str:
    lines = [f"# {result['title']}", "", *(f"- {k}: {v}" for k, v in result["versions"].items()),
             f"- peak: {result['peak_flops'] / 1e12:.3f} TFLOP/s ({result['peak_source']})",
             f"- total time: {result['elapsed_s']:.0f} s",
             "- GFLOPs/sample: one training step as each trainer runs it (mmcl runs only the token columns a batch "
             "uses, open_clip the whole context; patch dropout skips half the image tokens)", "",
             "| run | status | samples/s | vs open_clip | data wait | GFLOPs/sample | MFU | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['status']} | {r['samples_per_s']:.1f} | {r['ratio']:.2f} | "
                     f"{r['data_wait']:.3f} | {r['gflops_per_sample']:.3f} | {r['mfu']:.1%} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, fp32, a few steps, on the CPU")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-benchmark", help="folder for results.*")
    parser.add_argument("--workers", type=int, default=min(12, max(4, (os.cpu_count() or 4) - 2)),
                        help="loader workers of both trainers (GPU mode; default: the cores less two, 4 to 12)")
    parser.add_argument("--budget-s", type=float, help="time budget for everything (default 480; smoke 120)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    settings = smoke_settings() if args.cpu_smoke else gpu_settings(args.workers)
    if args.budget_s:
        settings.budget_s = args.budget_s
    if not args.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or with --cpu-smoke")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    found = versions()
    print("\n".join(f"{k}: {v}" for k, v in found.items()), flush=True)

    with tempfile.TemporaryDirectory(prefix="mmcl-gpu-bench-") as tmp:
        work = Path(tmp)
        spec = open_clip_spec(settings)
        # open_clip has no tiny model of its own: the same architecture is registered, here and in its trainer.
        model_file = str(register_open_clip(work, "tiny")) if args.cpu_smoke else ""
        # One epoch covers every run (an mmcl epoch boundary respawns the loader), and each worker gets 2 shards.
        urls = write_shards(work / "shards", settings.steps * settings.batch_size * 11 // 10, 2 * settings.workers,
                            settings.image_px)
        print(f"[{time.monotonic() - start:5.0f} s] shards written", flush=True)

        base_config = work / "mmcl.yaml"
        base_config.write_text(yaml.safe_dump(mmcl_run_config(settings, spec, work / "shards", work / "unused")))
        variants = [(label, overrides) for label, overrides, smoke in MMCL_VARIANTS if smoke or not args.cpu_smoke]
        by_model, variant_flops, rows = {}, {}, []
        for label, overrides in variants:
            try:  # a key this mmcl lacks (an older checkout) skips the row instead of failing the benchmark
                cfg = load_config(PretrainConfig, base_config, overrides)
            except UserError as err:
                rows.append({"name": label, "status": f"skipped: {err}"})
                continue
            key = cfg.model.model_dump_json()  # compiling changes no FLOPs: count each model once
            if key not in by_model:
                by_model[key] = mmcl_flops_per_sample(cfg)
            variant_flops[label] = by_model[key]
        open_clip_flops = open_clip_flops_per_sample(settings)
        if args.cpu_smoke:
            peak, peak_source = measured_matmul_peak("cpu", torch.float32), "measured fp32 matmul on this CPU"
        else:
            peak, peak_source = gpu_bf16_peak()
            found["measured_bf16_matmul_tflops"] = round(measured_matmul_peak("cuda", torch.bfloat16) / 1e12, 1)
        print(f"[{time.monotonic() - start:5.0f} s] FLOPs counted, peak {peak / 1e12:.3f} TFLOP/s ({peak_source})",
              flush=True)

        def budgeted(timeout_s: float) -> float:
            return min(timeout_s, settings.budget_s - (time.monotonic() - start))

        def record(name: str, result: dict, gflops: float, began: float, log: Path) -> None:
            rows.append({"name": name, **result, "gflops_per_sample": gflops, "wall_s": time.monotonic() - began})
            print(f"[{time.monotonic() - start:5.0f} s] {name}: {result['status']}, "
                  f"{result['samples_per_s']:.1f} samples/s", flush=True)
            if result["status"] != "ok":
                print("".join(log.read_text().splitlines(keepends=True)[-30:]), flush=True)

        began = time.monotonic()
        record(OPEN_CLIP_ROW, run_open_clip(settings, model_file, urls, work, budgeted(settings.run_timeout_s)),
               open_clip_flops / 1e9, began, work / "open_clip.log")
        for label, overrides in variants:
            if label not in variant_flops:
                continue
            compiled = any(o.startswith("train.compile=") for o in overrides)
            limit = budgeted(settings.run_timeout_s * (2 if compiled else 1))
            if limit < 20:
                rows.append({"name": label, "status": "skipped: time budget spent"})
                continue
            run_out = work / re.sub(r"\W+", "_", label)
            began = time.monotonic()
            record(label, run_mmcl(settings, base_config, [*overrides, f"train.output_dir={run_out}"], run_out,
                                   limit), variant_flops[label] / 1e9, began, run_out.with_suffix(".log"))

    baseline = rows[[r["name"] for r in rows].index(OPEN_CLIP_ROW)]["samples_per_s"]
    for r in rows:
        for k in ("samples_per_s", "data_wait", "gflops_per_sample", "wall_s"):
            r.setdefault(k, math.nan)
        r["ratio"] = r["samples_per_s"] / baseline
        r["mfu"] = r["samples_per_s"] * r["gflops_per_sample"] * 1e9 / peak
    title = (f"{'CPU smoke run' if args.cpu_smoke else 'GPU benchmark'}: {settings.model}, batch {settings.batch_size}, "
             f"{settings.workers} workers, {settings.steps} steps, mmcl {settings.mmcl_precision} / open_clip "
             f"{settings.open_clip_precision}")
    result = {"title": title, "settings": asdict(settings), "versions": found, "peak_flops": peak,
              "peak_source": peak_source, "elapsed_s": time.monotonic() - start, "rows": rows}
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    (out_dir / "results.md").write_text(markdown(result))
    print("\n" + markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
