"""`mmcl train --num-processes N`: N local processes through torchrun (gloo on CPU, NCCL on GPUs).

For users without an Accelerate config; `accelerate launch` and `torchrun` run the same module directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

import torch


def launch_local(num_processes: int, module: str, args: list[str]) -> int:
    """Run `python -m module args...` in `num_processes` processes on this machine; returns the exit code."""
    command = [sys.executable, "-m", "mmcl.training.launch", "--standalone", f"--nproc_per_node={num_processes}",
               "-m", module, *args]
    # Each process's share of the cores (the trainer refines it on CPU); set, it also spares torchrun's banner.
    threads = str(max(1, len(os.sched_getaffinity(0)) // num_processes))
    return subprocess.call(command, env={"OMP_NUM_THREADS": threads, **os.environ})


# Training FLOPs per sample from which compute takes every core of the process's share. Below it (mmcl's tiny
# model: 0.05 GFLOP) decoding a sample costs about as much as training on it, and compute threads on the cores the
# loader workers need make the OpenMP threads wait on one another: each worker keeps a core. Above it (a 9 M-parameter
# ViT/text model: 1 GFLOP) a worker needs a small part of a core and a reserved core would idle; measured both ways
# by benchmarks/train_throughput.py.
COMPUTE_BOUND_FLOPS = 3e8


def default_cpu_threads(num_workers: int, model: torch.nn.Module) -> int:
    """This process's share of the machine's cores, less one per loader worker unless the model is heavy enough
    (COMPUTE_BOUND_FLOPS per training sample, about 3x the towers' forward) for the workers to need little."""
    from mmcl.models.summary import summarize

    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = max(1, len(os.sched_getaffinity(0)) // local_processes)
    with torch.random.fork_rng():  # example inputs must not move the run's random state
        training_flops = 3 * sum(row.flops for row in summarize(model))
    return share if training_flops >= COMPUTE_BOUND_FLOPS else max(1, share - num_workers)


@contextmanager
def process_group():
    """This process's place among the processes torchrun / `accelerate launch` started (one process alone: rank 0
    of 1, no group): yields Accelerate's PartialState (`process_index`, `num_processes`, `device`,
    `is_main_process`) and leaves the process group when done."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    try:
        yield state
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def torchrun(argv: list[str]) -> int:
    """torchrun itself (`torch.distributed.run`), except that a failed run ends with the exit code of the process
    that failed first and one line, instead of torchrun's exit code 1 and its report: a process stopped by a user
    error (exit 2) has already said why."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        print(f"mmcl: process {rank} exited with code {failure.exitcode}; the others were stopped", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(torchrun(sys.argv[1:]))
