"""A run folder across attempts: a fresh start sets the previous attempt's logs aside, and an interrupted run says
how to continue it.

A fresh start (nothing to resume) in a folder that an interrupted run left behind, without a complete checkpoint,
would otherwise append its metrics to the old run's and keep the old config.yaml as the run's first (which a later
resume checks the data order against): those are renamed with a timestamp instead, e.g.
`metrics.jsonl` → `metrics.20260101-120000.jsonl`.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from pathlib import Path

from mmcl.training import checkpoints

log = logging.getLogger("mmcl.train")

# What a run writes beside checkpoints/, which a fresh start must not continue.
PREVIOUS_ATTEMPT = ("metrics.jsonl", "config.yaml", "resumes.jsonl", "eval", "tensorboard")


def set_aside_previous_attempt(out_dir: Path) -> None:
    """Rename what an earlier attempt wrote in `out_dir` (see PREVIOUS_ATTEMPT) to `NAME.<timestamp>[.EXT]`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for name in PREVIOUS_ATTEMPT:
        path = out_dir / name
        if not path.exists():
            continue
        target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
        for attempt in range(1, 1000):  # two fresh starts within a second
            if not target.exists():
                break
            target = path.with_name(f"{path.stem}.{stamp}-{attempt}{path.suffix}")
        os.replace(path, target)
        moved.append(f"{name} -> {target.name}")
    if moved:
        log.warning("%s holds an earlier attempt without a complete checkpoint; starting afresh, its files are set "
                    "aside: %s", out_dir, ", ".join(moved))


def train_command(config: str, overrides: list[str], num_processes: int, resume: str | None = None) -> str:
    """The `mmcl train` command line for this config and overrides, quoted for a shell; with `resume`, its
    `--resume` replaces any train.resume override."""
    if resume is not None:
        overrides = [o for o in overrides if not o.startswith("train.resume=")] + ["--resume", resume]
    processes = ["--num-processes", str(num_processes)] if num_processes > 1 else []
    return shlex.join(["mmcl", "train", *processes, config, *overrides])


def interrupted(out_dir: Path, config: str, overrides: list[str], num_processes: int) -> str:
    """What to say when a run is interrupted: its last complete checkpoint and the command that continues it."""
    found = checkpoints.complete_checkpoints(out_dir / "checkpoints")
    if not found:
        return (f"interrupted before the first complete checkpoint in {out_dir / 'checkpoints'}; start again with: "
                + train_command(config, overrides, num_processes))
    step, folder = found[-1]
    # Several processes may have come from another launcher (accelerate launch, torchrun, several nodes), whose
    # command line no process sees.
    launcher = " (or add train.resume=latest to the command that launched it)" if num_processes > 1 else ""
    return (f"interrupted; the last complete checkpoint is {folder} (step {step}); continue with: "
            + train_command(config, overrides, num_processes, "latest") + launcher)
