"""The metrics log: one record every `log_every` steps to OUTPUT/metrics.jsonl and the trackers.

Throughput is measured over the window since the previous record, less the time spent in `paused()` blocks
(evaluation, checkpoints), and the share of it spent waiting for data; `totals()` measures the same over the run.
A resumed run first cuts metrics.jsonl back to the checkpoint's step, so a step logged after that checkpoint by the
killed run appears once, not twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import torch

from mmcl.eval import geometry
from mmcl.config import flatten
from mmcl.losses.rows import output_modalities

log = logging.getLogger("mmcl.train")


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records of steps up to `last_step` (written through a temporary file and a rename)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut by the kill
            continue
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(temporary, path)


class MetricsLogger:
    """`path` is None on processes other than the main one (they only take part in the reductions)."""

    def __init__(self, path: Path | None, log: callable, global_batch: int, world_size: int, resumed_at: int = 0):
        self.log = log  # the trackers' log(values, step=...), e.g. Accelerator.log
        self.global_batch, self.world_size = global_batch, world_size
        if path is not None and resumed_at:
            truncate_log(path, resumed_at)
        self.file = path.open("a", encoding="utf-8") if path is not None else None
        self.run_start, self.run_paused, self.run_data_wait, self.run_steps = time.perf_counter(), 0.0, 0.0, 0
        self._start_window()

    def _start_window(self) -> None:
        self.window_start, self.data_wait, self.steps = time.perf_counter(), 0.0, 0

    @contextmanager
    def waiting_for_data(self):
        start = time.perf_counter()
        yield
        waited = time.perf_counter() - start
        self.data_wait += waited
        self.run_data_wait += waited

    @contextmanager
    def paused(self):
        """Time inside is not training time: the window's clock stops."""
        start = time.perf_counter()
        yield
        paused = time.perf_counter() - start
        self.window_start += paused
        self.run_paused += paused

    def step_done(self) -> None:
        self.steps += 1
        self.run_steps += 1

    def totals(self) -> dict:
        """This process's whole run so far (since this logger was made), as the windows measure it: steps,
        training seconds (paused time left out), samples/s and data-wait fraction."""
        seconds = time.perf_counter() - self.run_start - self.run_paused
        return {"steps": self.run_steps, "train_seconds": seconds,
                "samples_per_s": self.run_steps * self.global_batch / seconds,
                "data_wait_fraction": self.run_data_wait / seconds}

    def training_record(self, step: int, epoch: int, losses: torch.Tensor, term_names: list[str],
                        extra: dict) -> dict:
        """The record of the window ending at `step`: `losses` holds [total, *terms] reduced over processes."""
        elapsed = time.perf_counter() - self.window_start
        samples_per_s = self.steps * self.global_batch / elapsed
        record = {
            "step": step,
            "epoch": epoch,
            "samples_seen": step * self.global_batch,
            "loss": losses[0].item(),
            **{name: value.item() for name, value in zip(term_names, losses[1:])},
            **extra,
            "samples_per_s": samples_per_s,
            "samples_per_s_per_process": samples_per_s / self.world_size,
            "data_wait_fraction": self.data_wait / elapsed,
        }
        self._start_window()
        return record

    def write(self, record: dict) -> None:
        """To the trackers (all but `step`, which they take as the x-axis) and to metrics.jsonl."""
        self.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def tracker_hparams(config: dict) -> dict:
    """The config as `{dotted.key: scalar}`, the form experiment trackers accept as hyperparameters."""
    return {k: v if isinstance(v, (int, float, bool, str)) else json.dumps(v) for k, v in flatten(config).items()}


def batch_geometry(outputs: dict, batch: dict) -> dict:
    """Modality gap and uniformity of this process's rows of the step: a cheap live view of the space."""
    modalities = output_modalities(outputs)
    found = {}
    for m in modalities:
        present = outputs[m][batch[f"{m}_mask"]].detach().float() if f"{m}_mask" in batch else outputs[m].detach()
        if len(present) > 1:
            found[f"geometry/uniformity/{m}"] = geometry.uniformity(present)
    for a, b in combinations(modalities, 2):
        both = batch[f"{a}_mask"] & batch[f"{b}_mask"]
        if both.sum() > 0:
            found[f"geometry/gap/{a}-{b}"] = geometry.modality_gap(outputs[a][both].detach().float(),
                                                                   outputs[b][both].detach().float())
    return found


def log_start(cfg, accelerator, model, global_batch: int, start_step: int, out_dir: Path) -> None:
    """One line with the run's shape: processes, device, precision, threads, batch, steps, samples, parameters."""
    parameters = [(p.numel(), p.requires_grad) for p in model.parameters()]
    log.info("%d process(es) on %s (%s, %d compute threads each); global batch %d = %d per process x %d "
             "micro-batch(es) x %d; steps %d to %d, %d samples; %.2fM parameters, %.2fM trainable; output %s",
             accelerator.num_processes, accelerator.device.type, cfg.train.precision, torch.get_num_threads(),
             global_batch, cfg.data.batch_size, cfg.train.accum_steps, accelerator.num_processes, start_step + 1,
             cfg.train.steps, (cfg.train.steps - start_step) * global_batch, sum(n for n, _ in parameters) / 1e6,
             sum(n for n, trainable in parameters if trainable) / 1e6, out_dir)
