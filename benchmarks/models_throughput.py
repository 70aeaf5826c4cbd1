"""Training throughput per tower on this machine: forward + backward samples per second, next to counted FLOPs.

    python benchmarks/models_throughput.py [MODEL ...] [--batch-size 16] [--steps 5] [--threads N]

Prints one row per tower; the achieved GFLOP/s (3 x forward FLOPs per sample for forward + backward, the usual
estimate) shows how far a tower is from the machine's matmul speed, which is printed first for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.flops import measured_matmul_peak  # noqa: E402
from mmcl.models import create_model, summarize  # noqa: E402


def tower_rate(tower, batch_size: int, steps: int) -> float:
    tower.train()
    inputs = tower.example_input(batch_size)
    tower(inputs).sum().backward()  # warm-up: allocator, kernels
    start = time.perf_counter()
    for _ in range(steps):
        tower(inputs).sum().backward()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["tiny", "tiny-audio", "small"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}, "
          f"fp32 matmul {measured_matmul_peak('cpu', torch.float32, threads=args.threads) / 1e9:.1f} GFLOP/s, batch {args.batch_size}")
    print(f"{'model':16s} {'tower':8s} {'kind':16s} {'GFLOPs/sample':>14s} {'samples/s':>10s} {'GFLOP/s':>8s}")
    for name in args.models:
        model, _, _ = create_model(name)
        for row in summarize(model):
            rate = tower_rate(model.towers[row.modality], args.batch_size, args.steps)
            print(f"{name:16s} {row.modality:8s} {row.kind:16s} {row.flops / 1e9:>14.3f} {rate:>10.1f} "
                  f"{3 * row.flops * rate / 1e9:>8.1f}")


if __name__ == "__main__":
    main()
