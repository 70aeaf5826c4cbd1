"""A backdoor attack on contrastive pretraining and two defences, end to end on the built-in shapes data, on a CPU.

    python benchmarks/backdoor.py --out /tmp/backdoor                    # about 15 minutes on 2 cores
    python benchmarks/backdoor.py --out /tmp/backdoor --seeds 0 1 2      # the attack and defences over 3 seeds

Every step is an `mmcl` command, as a user would run it:

1. shapes pictures with captions (12 colour-shape classes) ▶ `mmcl shards prepare` ▶ `mmcl shards poison
   --fraction 0.01 --trigger patch`: 1 % of the pairs get a random-noise patch and the caption "a photo of a blue
   square" (the attack of Carlini & Terzis 2022 as CleanCLIP reproduces it);
2. `mmcl train` the tiny model on the poisoned shards ▶ `mmcl eval` with a `backdoor` task on held-out pictures:
   clean top-1, and the attack success rate (ASR: the share of non-target pictures with the patch classified as
   the target) beside the rate at which the same pictures go to the target without it;
3. `mmcl audit` the trained model on its own training shards: precision@k and AUROC of each score against
   poisoned.json;
4. defence (a): retrain from scratch with `data.drop_flagged` leaving out the top DROP_FRACTION of one score (chosen
   before any run: knn_image, the k-distance score of Huang et al., ICLR 2025; twice the poisoning rate, since a
   defender does not know the rate);
5. defence (b): fine-tune the poisoned model on clean pairs (CleanCLIP's setting: a clean set a few % of the
   pretraining size) with the CLIP term plus the in-modal term (`loss inmodal`, `data.second_view`), beside the
   same fine-tuning with the CLIP term alone, which tells what the in-modal term itself buys.

It prints one table (clean top-1 and ASR with 95 % bootstrap intervals per model; the audit's precision@k) and
writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools import demo_shapes  # noqa: E402
from pipelines.cli import main as mmcl  # noqa: E402

TARGET = "blue square"
TARGET_CAPTION = f"a photo of a {TARGET}"
POISON_FRACTION = 0.01
DROP_FRACTION = 0.02
DROP_SCORE = "knn_image"
PATCH = 16  # pixels of a 64-pixel picture: a quarter of its side
PER_CLASS = 200  # 2,400 training pairs, 24 poisoned
STEPS = 600  # 16 epochs at batch 64
FINETUNE_PER_CLASS = 25  # 300 clean pairs: 12.5 % of the pretraining set
FINETUNE_STEPS = 100
EVAL_PER_CLASS = 25


def run(*argv: str) -> None:
    code = mmcl([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"mmcl {' '.join(map(str, argv))} exited with {code}")


def train(config_overrides: list[str], out: Path, shards: Path, steps: int, seed: int) -> Path:
    run("train", ROOT / "configs" / "demo.yaml", f"data.train_shards={shards}", f"train.output_dir={out}",
        f"train.steps={steps}", f"train.seed={seed}", "train.log_every=50", "train.trackers=[]", *config_overrides)
    return out


def evaluate(model: Path, eval_shards: Path, out: Path, seed: int) -> dict:
    tasks = out.with_suffix(".tasks.json")
    tasks.write_text(json.dumps({"bootstrap": {"samples": 1000, "seed": seed}, "tasks": [
        {"type": "backdoor", "name": "backdoor", "data": {"path": str(eval_shards)}, "target": TARGET,
         "trigger": {"kind": "patch", "patch_size": PATCH, "seed": seed},
         "templates": list(demo_shapes.EVAL_TEMPLATES)}]}))
    run("eval", model, "--tasks", tasks, "--output", out)
    return json.loads(out.read_text())  # one task: the file is its result


def shards_from(pictures: Path, out: Path, *flags: str) -> Path:
    run("shards", "prepare", pictures, "--output", out, "--image-size", 64, "--quiet", *flags)
    return out


def one_seed(work: Path, seed: int, per_class: int, steps: int, finetune_steps: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    started = time.perf_counter()
    clean = shards_from(demo_shapes.write_pairs(work / "pairs", per_class, seed), work / "clean")
    poisoned = work / "poisoned"
    shutil.rmtree(poisoned, ignore_errors=True)
    run("shards", "poison", clean, "--output", poisoned, "--fraction", POISON_FRACTION, "--target-caption",
        TARGET_CAPTION, "--trigger", "patch", "--patch-size", PATCH, "--seed", seed)
    heldout = shards_from(demo_shapes.write_class_folders(work / "heldout", EVAL_PER_CLASS, seed + 1000),
                          work / "eval", "--class-folders")
    finetune = shards_from(demo_shapes.write_pairs(work / "finetune_pairs", FINETUNE_PER_CLASS, seed + 2000),
                           work / "finetune")
    timings["data"] = time.perf_counter() - started

    rows = {}
    started = time.perf_counter()
    victim = train([], work / "runs" / "poisoned", poisoned, steps, seed)
    timings["train poisoned"] = time.perf_counter() - started
    rows["poisoned model"] = evaluate(victim, heldout, work / "eval-poisoned.json", seed)

    started = time.perf_counter()
    audit_dir = work / "audit"
    run("audit", victim, "--data", poisoned, "--poisoned", poisoned / "poisoned.json",
        "--output", audit_dir / "scores.parquet", "--report", audit_dir)
    audit = json.loads((audit_dir / "metrics.json").read_text())
    timings["audit"] = time.perf_counter() - started

    started = time.perf_counter()
    dropped = train([f"data.drop_flagged={{scores: {audit_dir / 'scores.parquet'}, score: {DROP_SCORE}, "
                     f"fraction: {DROP_FRACTION}}}"], work / "runs" / "dropped", poisoned, steps, seed)
    timings["retrain without flagged"] = time.perf_counter() - started
    rows[f"(a) retrained without top {DROP_FRACTION:.0%} {DROP_SCORE}"] = evaluate(
        dropped, heldout, work / "eval-dropped.json", seed)

    exported = work / "poisoned-open_clip"
    run("export", victim, "--format", "open_clip", "--output", exported)
    start_from = work / "poisoned.yaml"
    start_from.write_text(json.dumps({"open_clip": {"name": f"local-dir:{exported}",
                                                    "weights": str(exported / "open_clip_model.safetensors")}}))
    finetuning = [f"model={start_from}", "optim.lr=2e-4", "optim.warmup_steps=10", "data.shuffle_buffer=300"]
    for name, run_name, extra in (
            ("(b) fine-tuned, clip + inmodal", "finetuned-inmodal", ["loss=[{name: clip}, {name: inmodal}]",
                                                                     "data.second_view={}"]),
            ("(b') fine-tuned, clip only", "finetuned-clip", [])):
        started = time.perf_counter()
        tuned = train([*finetuning, *extra], work / "runs" / run_name, finetune, finetune_steps, seed)
        timings[name] = time.perf_counter() - started
        rows[name] = evaluate(tuned, heldout, work / f"eval-{run_name}.json", seed)
    return {"seed": seed, "rows": rows, "audit": audit, "timings_s": timings,
            "drop_set": drop_set(audit_dir / "scores.parquet", poisoned / "poisoned.json")}


def drop_set(scores: Path, record: Path) -> dict:
    """How many poisoned samples defence (a)'s drop set holds: the top DROP_FRACTION by DROP_SCORE."""
    import math

    import pyarrow.parquet as pq

    table = pq.read_table(scores).to_pydict()
    poisoned = {(s["shard"], s["key"]) for s in json.loads(record.read_text())["samples"]}
    size = math.ceil(DROP_FRACTION * len(table["key"]))
    order = sorted(range(len(table["key"])), key=lambda i: -table[DROP_SCORE][i])[:size]
    caught = sum((table["shard"][i], table["key"][i]) in poisoned for i in order)
    return {"dropped": size, "poisoned": len(poisoned), "poisoned_dropped": caught}


def interval(metric: dict) -> str:
    low, high = metric.get("low"), metric.get("high")
    return f"{metric['value']:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{metric['value']:.3f}"


def headline(result: dict, name: str) -> dict:
    """A backdoor result's metric as {value, low, high} (bootstrap intervals: result["intervals"][name])."""
    low, high = result.get("intervals", {}).get(name, (None, None))
    return {"value": result["metrics"][name], "low": low, "high": high}


def table(results: list[dict]) -> str:
    lines = ["| seed | model | clean top-1 | ASR | target rate without trigger |", "|---|---|---|---|---|"]
    for result in results:
        for name, row in result["rows"].items():
            lines.append(f"| {result['seed']} | {name} | {interval(headline(row, 'clean_top1'))} | "
                         f"{interval(headline(row, 'attack_success_rate'))} | "
                         f"{interval(headline(row, 'clean_target_rate'))} |")
    lines += ["", "| seed | audit score | AUROC | precision@(number poisoned) |", "|---|---|---|---|"]
    for result in results:
        count = result["drop_set"]["poisoned"]
        for score, found in result["audit"].items():
            auroc = "n/a" if found["auroc"] is None else f"{found['auroc']:.3f}"
            lines.append(f"| {result['seed']} | {score} | {auroc} | {found[f'precision@{count}']:.3f} |")
    for result in results:
        d = result["drop_set"]
        lines.append(f"\nseed {result['seed']}: defence (a) left out {d['dropped']} samples (top {DROP_FRACTION:.0%} "
                     f"by {DROP_SCORE}), {d['poisoned_dropped']} of the {d['poisoned']} poisoned")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help="training pairs per class")
    parser.add_argument("--steps", type=int, default=STEPS, help="pretraining steps")
    parser.add_argument("--finetune-steps", type=int, default=FINETUNE_STEPS)
    args = parser.parse_args()
    results = [one_seed(args.out / f"seed-{seed}", seed, args.per_class, args.steps, args.finetune_steps)
               for seed in args.seeds]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
