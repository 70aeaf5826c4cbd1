"""Processes forked from the test process, standing in for the ones torchrun starts: they inherit every module
already imported, so each starts in milliseconds instead of the ~10 s a fresh interpreter takes to import torch,
torchvision and open_clip (mp.spawn's way)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Callable

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    import torch
    from accelerate.state import AcceleratorState

    # First of all: a test before this one may have run OpenMP with several threads in the test process, and the
    # OpenMP runtime's thread pool does not survive a fork; one thread keeps the child off it (as DataLoader
    # workers do). The trainer then chooses its own count, one thread per process here.
    torch.set_num_threads(1)

    # What torchrun sets. Accelerate's process state is a singleton: one the test process built before the fork
    # (single process) must not stand in for this process's.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    AcceleratorState._reset_state(reset_partial_state=True)
    fn(rank, *args)


def run_forked(fn: Callable, args: tuple = (), world_size: int = 2) -> None:
    """`fn(rank, *args)` in `world_size` forked processes with torchrun's environment; raises if any fails."""
    mp.start_processes(_entry, args=(world_size, free_port(), fn, args), nprocs=world_size, start_method="fork")


def _train(rank: int, argv: list[str], fsdp_on_cpu: bool) -> None:
    from pipelines import pretrain
    from pipelines.cli import configure_logging, run_guarded

    recipe = pretrain.PretrainRecipe
    if fsdp_on_cpu:  # as `python -m tests.fsdp_cpu_run` does
        from mmcl.training import fsdp
        from tests.fsdp_cpu_run import CpuFsdpRecipe

        fsdp.require_gpu, recipe = (lambda: None), CpuFsdpRecipe
    logging.getLogger().handlers.clear()  # pytest's capture handlers would keep the log from stderr
    configure_logging()
    code = run_guarded(lambda: pretrain.main(argv, recipe_class=recipe))
    if code:
        raise SystemExit(code)


def train_forked(argv: list[str], world_size: int = 2, fsdp_on_cpu: bool = False) -> None:
    """`pipelines.pretrain CONFIG [overrides]` (argv) as torchrun would run it in `world_size` processes; with
    `fsdp_on_cpu`, Accelerate's FSDP path forced onto gloo (tests/fsdp_cpu_run.py). Raises if a process fails."""
    run_forked(_train, (argv, fsdp_on_cpu), world_size)
