"""What a run says on the console beyond its progress bar: each evaluation's headline metrics, a warning when data
loading holds training back, and a closing summary. metrics.jsonl holds every number; these lines are the ones a
person watching the run needs.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from pathlib import Path

log = logging.getLogger("mmcl.train")

# The metric of each evaluation task that stands for it: zero-shot top-1 (multi-label: mAP), retrieval recall@1,
# geometry's gap.
HEADLINE = ("top1", "mAP", "recall@1", "modality_gap")


def eval_line(step: int, evaluated: dict[str, float], best_metric: str | None, best: dict, improves: bool) -> str:
    """`step 200 eval: shapes/top1 0.1230 (best), ret/image_to_text/recall@1 0.0400, ...`: the best metric first,
    then each task's headline metrics; `best` is the best checkpoint so far (before this evaluation)."""
    names = [best_metric] if best_metric else []
    names += [k for k in evaluated if k.rsplit("/", 1)[-1] in HEADLINE and k != best_metric]
    parts = []
    for name in names or list(evaluated)[:4]:
        part = f"{name} {_number(evaluated[name])}"
        if name == best_metric:
            part += " (best)" if improves else f" (best {_number(best['value'])} at step {best['step']})"
        parts.append(part)
    return f"step {step} eval: " + ", ".join(parts)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class DataWaitWatch:
    """Warns once when the data-wait fraction stays above `threshold` for `intervals` log intervals in a row. The
    first interval after a (re)start is left out: it holds the loader workers' start-up."""

    def __init__(self, num_workers: int, cpu_threads: int | None, threshold: float = 0.3, intervals: int = 3):
        self.num_workers, self.cpu_threads = num_workers, cpu_threads
        self.threshold, self.intervals = threshold, intervals
        self.seen, self.recent, self.warned = 0, [], False

    def __call__(self, step: int, fraction: float) -> None:
        self.seen += 1
        if self.warned or self.seen == 1:
            return
        self.recent = (self.recent + [(step, fraction)])[-self.intervals:]
        if len(self.recent) == self.intervals and all(f > self.threshold for _, f in self.recent):
            self.warned = True
            log.warning("training waited for data %s of the time over the last %d log intervals (steps %d-%d); "
                        "likely fixes: more loader workers (data.num_workers, now %d); shards prepared at the "
                        "model's input size and sample rate, so each sample decodes less (mmcl shards prepare "
                        "--image-size N --resize-mode keep_ratio, --audio-rate HZ)%s",
                        "/".join(f"{f:.0%}" for _, f in self.recent), self.intervals, self.recent[0][0], step,
                        self.num_workers,
                        "" if self.cpu_threads is None else
                        f"; fewer compute threads (train.cpu_threads, now {self.cpu_threads}) to leave the loader "
                        "workers cores")


def summary(*, best_metric: str | None, best: dict, final: Path, wall_seconds: float, totals: dict,
            failures: Counter) -> str:
    """The closing block: best and final checkpoints, time, throughput, data wait and skipped samples (`totals`:
    MetricsLogger.totals(); `failures`: every process's counts, summed)."""
    if best:
        best_line = (f"step {best['step']}, {best['metric']} {best['value']:.4f}: {best['folder']} "
                     f"(alias {final.parent / 'best'})")
    else:
        best_line = "none (no eval.best_metric)" if best_metric is None else "none (no evaluation yet)"
    reasons = ", ".join(f"{reason} {count}" for reason, count in failures.most_common())
    return "\n".join([
        "run summary:",
        f"  best checkpoint:  {best_line}",
        f"  final checkpoint: {final}",
        f"  wall time:        {timedelta(seconds=round(wall_seconds))} ({totals['steps']} steps trained, "
        f"{timedelta(seconds=round(totals['train_seconds']))} of it training)",
        f"  throughput:       {totals['samples_per_s']:.1f} samples/s, data wait {totals['data_wait_fraction']:.1%} "
        "(training time only)",
        # Undecodable samples and those an epoch leaves out to keep ranks in step: both are data not trained on.
        f"  samples skipped:  {sum(failures.values())}" + (f" ({reasons})" if reasons else ""),
    ])
