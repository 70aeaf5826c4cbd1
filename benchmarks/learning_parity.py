"""Learning parity: does `mmcl train` give as good a model as `open_clip_train.main` for the same data and compute?

    python benchmarks/learning_parity.py [--seeds 0 1 2 3 4] [--epochs 9] [--model small|tiny]

Both trainers get the same WebDataset shards (1,600 Twemoji images with their English CLDR names, in Unicode order
as a manifest would give them, 8 shards of 200), the same open_clip model architecture and the same
hyper-parameters (batch 32, 2 loader workers, AdamW lr 5e-4, wd 0.2, betas (0.9, 0.98), eps 1e-6, 10 warmup steps,
cosine, no clipping, fp32, one process, 9 epochs = 450 steps). Each data set sizes divide evenly (2 workers x 4
shards x 25 batches), so both see every sample once per epoch and take exactly the same number of steps.

Both final checkpoints are scored by the same code here, in open_clip's model (mmcl's weights mapped onto it, a
one-to-one renaming): retrieval R@1 over the 1,600 training pairs (image->text, text->image), R@1 over the
288 held-out emoji never trained on (their names are compositional, so this measures generalisation) and zero-shot
top-1 of the held-out emoji's Unicode group (9 classes). Prints the per-seed table, mean +- sd, and whether mmcl's
mean is within one standard error of open_clip's (or better).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
import webdataset as wds
import yaml
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.peer_models import (MODELS, OPEN_CLIP_ENTRY, mmcl_model_config, open_clip_name,  # noqa: E402
                                     register_open_clip)
from data_tools.demo_emoji import sources  # noqa: E402
from mmcl.interop.open_clip_format import to_open_clip_state  # noqa: E402

SHARDS, PER_SHARD, HELDOUT_FRACTION = 8, 200, 0.15
HPARAMS = {"batch_size": 32, "workers": 2, "lr": 5e-4, "wd": 0.2, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6,
           "warmup": 10}
GROUP_TEMPLATES = ("an emoji from the {} group.", "a {} emoji.")

# --- data
def emoji_split(seed: int = 0):
    """(train, heldout) lists of (emoji, English name): skin-tone variants left out, 15 % of emoji held out."""
    images = sources.images()
    chosen = [e for e in sources.catalogue()
              if not e.has_skin_tone and e.stem in images and sources.name(e, "en") and e.group != "Component"]
    rng = random.Random(f"parity-{seed}")
    heldout = set(rng.sample(range(len(chosen)), round(HELDOUT_FRACTION * len(chosen))))
    train = [e for i, e in enumerate(chosen) if i not in heldout]
    picked = set(rng.sample(range(len(train)), SHARDS * PER_SHARD))
    train = [e for i, e in enumerate(train) if i in picked]  # Unicode order, as a manifest would list them
    named = lambda items: [(e, sources.name(e, "en")) for e in items]  # noqa: E731
    return named(train), named([e for i, e in enumerate(chosen) if i in heldout])


def write_shards(folder: Path, pairs) -> str:
    folder.mkdir(parents=True)
    images = sources.images()
    for s in range(SHARDS):
        with wds.TarWriter(str(folder / f"train-{s:06d}.tar")) as writer:
            for i, (emoji, caption) in enumerate(pairs[s * PER_SHARD:(s + 1) * PER_SHARD]):
                writer.write({"__key__": f"{s:02d}_{i:04d}_{emoji.stem}", "png": images[emoji.stem].read_bytes(),
                              "txt": caption})
    return str(folder / f"train-{{000000..{SHARDS - 1:06d}}}.tar")


# --- training
def run_open_clip(work: Path, config: Path, urls: str, model: str, seed: int, epochs: int, threads: int) -> dict:
    name = f"open_clip-seed{seed}"
    h = HPARAMS
    command = [
        sys.executable, "-c", OPEN_CLIP_ENTRY, str(config), "--model", open_clip_name(model),
        "--train-data", urls, "--dataset-type", "webdataset", "--train-num-samples", str(SHARDS * PER_SHARD),
        "--epochs", str(epochs), "--batch-size", str(h["batch_size"]), "--workers", str(h["workers"]),
        "--precision", "fp32", "--lr", str(h["lr"]), "--wd", str(h["wd"]), "--beta1", str(h["beta1"]),
        "--beta2", str(h["beta2"]), "--eps", str(h["eps"]), "--warmup", str(h["warmup"]), "--seed", str(seed),
        "--logs", str(work / "open_clip_logs"), "--name", name, "--save-frequency", str(epochs),
        "--log-every-n-steps", "50",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=work,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if result.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{result.stderr[-4000:]}")
    checkpoint = torch.load(work / "open_clip_logs" / name / "checkpoints" / f"epoch_{epochs}.pt",
                            map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}


def run_mmcl(work: Path, shard_dir: Path, model: str, seed: int, steps: int, threads: int | None, extra: list[str],
             label: str = "mmcl") -> tuple[dict, float]:
    """Trains; returns the final weights under open_clip's names and the seconds spent in training steps (from
    the run's own per-window samples/s: start-up and checkpoint writing left out)."""
    out = work / f"{label}-seed{seed}"
    h = HPARAMS
    config = {
        "model": mmcl_model_config(model),
        "data": {"train_shards": str(shard_dir), "modalities": ["image", "text"], "batch_size": h["batch_size"],
                 "num_workers": h["workers"]},
        "loss": [{"name": "clip"}],
        "optim": {"lr": h["lr"], "weight_decay": h["wd"], "betas": [h["beta1"], h["beta2"]], "eps": h["eps"],
                  "warmup_steps": h["warmup"], "schedule": "cosine", "grad_clip_norm": None},
        "train": {"steps": steps, "seed": seed, "output_dir": str(out), "log_every": 10, "trackers": [],
                  "cpu_threads": threads},
    }
    path = work / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(path), *extra],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"mmcl train failed:\n{result.stderr[-4000:]}")
    windows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds, done = 0.0, 0
    for record in (r for r in windows if "samples_per_s" in r):
        seconds += (record["step"] - done) * h["batch_size"] / record["samples_per_s"]
        done = record["step"]
    weights = load_file(out / "checkpoints" / f"step-{steps:08d}" / "model" / "model.safetensors")
    return to_open_clip_state(weights), seconds


# --- scoring (the same code for both)
@torch.no_grad()
def score(state: dict, model: str, train, heldout) -> dict:
    clip, _, preprocess = open_clip.create_model_and_transforms(open_clip_name(model))
    clip.load_state_dict(state)
    clip.eval()
    tokenizer = open_clip.get_tokenizer(open_clip_name(model))
    images = sources.images()

    def embed_images(items):
        pixels = [preprocess(Image.open(io.BytesIO(images[e.stem].read_bytes())).convert("RGB")) for e, _ in items]
        return torch.cat([F.normalize(clip.encode_image(torch.stack(pixels[i:i + 256])), dim=-1)
                          for i in range(0, len(pixels), 256)])

    def embed_texts(texts):
        return torch.cat([F.normalize(clip.encode_text(tokenizer(texts[i:i + 256])), dim=-1)
                          for i in range(0, len(texts), 256)])

    def recall_at_1(a, b):
        return (a @ b.T).argmax(dim=1).eq(torch.arange(len(a))).float().mean().item()

    results = {}
    for split, items in (("train", train), ("heldout", heldout)):
        image, text = embed_images(items), embed_texts([caption for _, caption in items])
        results[f"{split} i->t R@1"] = recall_at_1(image, text)
        results[f"{split} t->i R@1"] = recall_at_1(text, image)
        if split == "heldout":
            groups = sorted({e.group for e, _ in items})
            classes = torch.stack([F.normalize(embed_texts([t.format(g.lower()) for t in GROUP_TEMPLATES]).mean(0),
                                               dim=-1) for g in groups])
            labels = torch.tensor([groups.index(e.group) for e, _ in items])
            results["heldout zero-shot group"] = (image @ classes.T).argmax(1).eq(labels).float().mean().item()
            results["chance (group)"] = 1 / len(groups)
    return results


def summarise(rows: dict[str, list[dict]], seeds: list[int]) -> None:
    metrics = [m for m in rows["open_clip"][0] if not m.startswith("chance")]
    print(f"\nper seed ({', '.join(metrics)}):")
    for trainer, runs in rows.items():
        for seed, r in zip(seeds, runs):
            print(f"  {trainer:9s} seed {seed}: " + "  ".join(f"{r[m]:.3f}" for m in metrics))
    print(f"\n{'metric':26s} {'open_clip mean +- sd':>22s} {'mmcl mean +- sd':>18s}   ratio   within 1 SE or better")
    for m in metrics:
        oc, ours = [r[m] for r in rows["open_clip"]], [r[m] for r in rows["mmcl"]]
        oc_mean, our_mean = statistics.mean(oc), statistics.mean(ours)
        oc_sd, our_sd = (statistics.stdev(v) if len(v) > 1 else 0.0 for v in (oc, ours))
        se = oc_sd / math.sqrt(len(oc))
        ok = "yes" if our_mean >= oc_mean - se else "NO"
        print(f"{m:26s} {oc_mean:12.3f} +- {oc_sd:.3f} {our_mean:8.3f} +- {our_sd:.3f}   "
              f"{our_mean / oc_mean if oc_mean else float('nan'):5.2f}x  {ok}")
    print(f"chance (group zero-shot): {rows['open_clip'][0]['chance (group)']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--model", choices=sorted(MODELS), default="small")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads of each trainer (the same for both; learning does not depend on it)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the two trainers of a seed at the same time (use with --threads 1 on 2 cores)")
    parser.add_argument("--mmcl-extra", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra mmcl overrides, e.g. optim.fused=false (to test a candidate difference)")
    args = parser.parse_args()
    train, heldout = emoji_split()
    steps = args.epochs * SHARDS * PER_SHARD // HPARAMS["batch_size"]
    rows: dict[str, list[dict]] = {"open_clip": [], "mmcl": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        urls = write_shards(work / "shards", train)
        config = register_open_clip(work, args.model)
        print(f"{len(train)} training pairs, {len(heldout)} held-out emoji; model {args.model}; "
              f"{steps} steps of {HPARAMS['batch_size']}")
        trainers = {"open_clip": lambda seed: run_open_clip(work, config, urls, args.model, seed, args.epochs,
                                                           args.threads),
                    "mmcl": lambda seed: run_mmcl(work, work / "shards", args.model, seed, steps, args.threads,
                                                  args.mmcl_extra)[0]}
        # Side by side, each trainer has a core of its own (on 2 cores a second compute thread adds little).
        with ThreadPoolExecutor(max_workers=2 if args.side_by_side else 1) as pool:
            for seed in args.seeds:
                states = {name: pool.submit(run, seed) for name, run in trainers.items()}
                for name, state in states.items():
                    rows[name].append(score(state.result(), args.model, train, heldout))
                    print(f"seed {seed} {name:9s}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[name][-1].items()),
                          flush=True)
    summarise(rows, args.seeds)


if __name__ == "__main__":
    main()
