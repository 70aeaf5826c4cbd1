"""Patch dropout at equal wall time: is the speed it buys a gain, or does it cost accuracy?

    python benchmarks/patch_dropout_quality.py [--seconds 150] [--seeds 0 1 2] [--rate 0.5]

The emoji data and scoring of benchmarks/learning_parity.py (the same model, hyper-parameters and held-out set).
A short pilot run of each variant measures its training speed here; then each trains for as many steps as fit in the
same training-time budget (each with its own full cosine schedule, as FLIP compares), and both are scored by the
same code: retrieval R@1 on the training pairs, on the held-out emoji, and held-out zero-shot group accuracy.
Variants: no patch dropout; patch dropout `--rate` throughout; and the same with its last 10 % of steps unmasked
(`train.unmasked_steps`, FLIP's final phase).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.learning_parity import HPARAMS, emoji_split, run_mmcl, score, write_shards  # noqa: E402
from benchmarks.peer_models import register_open_clip  # noqa: E402

PILOT_STEPS = 40


def variants(rate: float) -> dict[str, Callable[[int], list[str]]]:
    """Label -> overrides for a run of `steps` steps."""
    dropout = f"model.towers.image.patch_dropout={rate}"
    return {
        "no patch dropout": lambda steps: [],
        f"patch dropout {rate}": lambda steps: [dropout],
        f"patch dropout {rate}, last 10% unmasked": lambda steps: [dropout, f"train.unmasked_steps={steps // 10}"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="training-time budget of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--model", default="small")
    parser.add_argument("--threads", type=int, default=None, help="train.cpu_threads (default: mmcl's own)")
    args = parser.parse_args()
    train, heldout = emoji_split()
    table: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_shards(work / "shards", train)
        register_open_clip(work, args.model)
        runs = variants(args.rate)
        speeds = {}
        for label, overrides in runs.items():
            if "unmasked" in label:  # its speed is the masked run's, but for the unmasked tail
                continue
            _, seconds = run_mmcl(work, work / "shards", args.model, 0, PILOT_STEPS, args.threads,
                                  overrides(PILOT_STEPS), label=f"pilot-{len(speeds)}")
            speeds[label] = PILOT_STEPS / seconds
        masked, plain = speeds[f"patch dropout {args.rate}"], speeds["no patch dropout"]
        steps = {"no patch dropout": round(args.seconds * plain), f"patch dropout {args.rate}": round(args.seconds * masked)}
        # The unmasked tail runs at the plain speed: fewer steps fit when 10 % of them are unmasked.
        per_step = 0.9 / masked + 0.1 / plain
        steps[f"patch dropout {args.rate}, last 10% unmasked"] = round(args.seconds / per_step)
        print(f"pilot speeds (steps/s of {HPARAMS['batch_size']}): no dropout {plain:.2f}, dropout {args.rate} "
              f"{masked:.2f} ({masked / plain:.2f}x); steps in {args.seconds:.0f} s: {steps}", flush=True)
        for seed in args.seeds:
            for index, (label, overrides) in enumerate(runs.items()):
                state, seconds = run_mmcl(work, work / "shards", args.model, seed, steps[label], args.threads,
                                          overrides(steps[label]), label=f"variant{index}")
                result = score(state, args.model, train, heldout) | {"train seconds": seconds}
                table.setdefault(label, []).append(result)
                print(f"seed {seed} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()), flush=True)
    metrics = [m for m in next(iter(table.values()))[0] if not m.startswith("chance")]
    print(f"\nmean over seeds {args.seeds}, equal training time ({args.seconds:.0f} s budget), model {args.model}:")
    print(f"{'variant':36s} {'steps':>6s} " + " ".join(f"{m:>24s}" for m in metrics))
    for label, results in table.items():
        print(f"{label:36s} {steps[label]:6d} " + " ".join(
            f"{statistics.mean(r[m] for r in results):24.3f}" for m in metrics))


if __name__ == "__main__":
    main()
