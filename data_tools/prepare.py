"""``prepare_shards``: list the input, plan shards, write the ones this part owns, merge when all exist.

Each shard is one task for a worker process, so workers never share a file and a shard's
content does not depend on how many workers ran. Re-running on the same output skips
complete shards (resume); ``prepare.json`` guards against resuming with different inputs (resume.py).
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from data_tools.files import read_json, remove_temps, shard_manifest_path, shard_stats_path
from data_tools.manifests import ManifestColumns
from data_tools.merge import is_complete, merge, require_samples, shard_names
from data_tools.overlap import find_overlap
from data_tools.plan import auto_shard_size, mark_content_duplicates, part_shards, shard_ranges
from data_tools.resume import check_and_write_plan, fingerprint
from data_tools.sample import SampleOptions
from data_tools.sources import load_specs
from data_tools.writer import write_shard
from mmcl.errors import UserError

_PROGRESS_INTERVAL = 0.25  # seconds between a worker's progress messages
_progress_queue = None  # set in each worker process by _init_worker
_unreported = [0, 0]  # samples written, samples failed since the last message
_last_report = 0.0


def _init_worker(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    # One worker per core: keep torch (resampling) from starting a thread per core in every worker.
    # Already imported by webdataset in the parent, so this costs nothing after fork.
    import torch

    torch.set_num_threads(1)


def _flush_progress() -> None:
    global _last_report
    if any(_unreported):
        _progress_queue.put(tuple(_unreported))
        _unreported[:] = [0, 0]
    _last_report = time.monotonic()


def _report(ok: bool) -> None:
    # Batched: a message per sample would cost the main process a wake-up per sample.
    _unreported[0 if ok else 1] += 1
    if time.monotonic() - _last_report > _PROGRESS_INTERVAL:
        _flush_progress()


def _write_in_worker(tar_path: Path, specs, opts: SampleOptions) -> dict:
    stats = write_shard(tar_path, specs, opts, on_sample=_report)
    _flush_progress()
    return stats


def _check_pattern(pattern: str) -> None:
    try:
        name = pattern % 0
    except (TypeError, ValueError):
        raise UserError(f"--pattern {pattern!r}: needs exactly one integer field such as %06d") from None
    if not name.endswith(".tar") or "/" in name or pattern % 0 == pattern % 1:
        raise UserError(f"--pattern {pattern!r}: must be a file name ending in .tar with an integer field, e.g. shard-%06d.tar")


def _check_part_wrote_samples(output: Path, names: list[str], mine: range, part: int) -> None:
    """Before the set can be merged, judge this part alone: its shards written now and those kept from before."""
    per_shard = [read_json(shard_stats_path(output / names[i])) for i in mine]
    summed = {"count": sum(s["count"] for s in per_shard), "successes": sum(s["successes"] for s in per_shard),
              "failures_by_reason": sum((Counter(s["failures_by_reason"]) for s in per_shard), Counter()),
              "failures": [f for s in per_shard for f in s["failures"]]}
    require_samples(summed, f"{output}: none of the {summed['count']} samples of --part {part} was written",
                    f"this part's *_stats.json files in {output}")


def _run(jobs: list[tuple[Path, list]], opts: SampleOptions, workers: int, on_progress: Callable[[int, int], None]) -> list[dict]:
    if workers <= 1 or len(jobs) <= 1:
        return [write_shard(path, specs, opts, lambda ok: on_progress(int(ok), int(not ok))) for path, specs in jobs]
    context = multiprocessing.get_context("fork")
    progress = context.Queue()
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_init_worker, initargs=(progress,)) as pool:
        futures = [pool.submit(_write_in_worker, path, specs, opts) for path, specs in jobs]
        remaining = sum(len(specs) for _, specs in jobs)
        while remaining:
            try:
                written, failed = progress.get(timeout=0.5)
            except queue.Empty:
                for future in futures:
                    if future.done() and future.exception() is not None:
                        raise future.exception()
                continue
            on_progress(written, failed)
            remaining -= written + failed
        return [future.result() for future in futures]


def prepare_shards(
    source: str | Path,
    output: str | Path,
    *,
    layout: str = "auto",
    columns: ManifestColumns = ManifestColumns(),
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    pattern: str = "shard-%06d.tar",
    options: SampleOptions = SampleOptions(),
    dedup: bool = False,
    workers: int = 1,
    num_parts: int = 1,
    part: int = 0,
    classnames: list[str] | None = None,
    templates: list[str] | None = None,
    eval_of: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Write WebDataset shards for ``source`` into ``output``.

    ``layout`` is ``folder`` (files sharing a stem form a sample), ``class_folders``
    (``CLASS/NAME.ext``, labels from sorted class names), ``manifest`` (csv/tsv/jsonl/parquet,
    optionally .gz) or ``auto``. Without ``shard_size`` it is chosen from the sample count
    (plan.auto_shard_size). ``eval_of`` names a training set to look for this set's samples in
    once the set is complete (overlap.py). Returns a summary; ``summary["merged"]`` holds the
    set-level stats once every part has finished (None while parts are outstanding).
    Raises UserError when no sample at all could be written.
    """
    source, output = Path(source), Path(output)
    _check_pattern(pattern)
    if eval_of is not None and not Path(eval_of).is_dir():
        raise UserError(f"--eval-of {eval_of}: not a directory of training shards")
    specs, found_classes = load_specs(source, layout, columns, output, classnames)
    if not specs:
        raise UserError(f"{source}: found no samples (expected e.g. NAME.jpg + NAME.txt, or CLASS/NAME.jpg with --class-folders)")
    if classnames and found_classes and len(classnames) != len(found_classes):
        raise UserError(f"--classnames: {len(classnames)} names given for {len(found_classes)} class folders in {source}")
    if dedup:
        mark_content_duplicates(specs)
    size_note = None
    if shard_size is None:
        shard_size, size_note = auto_shard_size(len(specs))
    ranges = shard_ranges(specs, shard_size, shard_bytes)
    mine = part_shards(len(ranges), num_parts, part)

    settings = {"layout": layout, "shard_size": shard_size, "shard_bytes": shard_bytes, "pattern": pattern,
                "options": asdict(options), "dedup": dedup}
    plan_fingerprint, listing = fingerprint(specs, settings)
    plan = {
        "source": str(source.resolve()),
        "n_shards": len(ranges),
        "n_samples": len(specs),
        "pattern": pattern,
        "settings": settings,
        "fingerprint": plan_fingerprint,
        "listing": listing,
        "classnames": classnames or found_classes,
        "templates": templates,
    }
    output.mkdir(parents=True, exist_ok=True)
    check_and_write_plan(output, plan)

    names = shard_names(plan)
    todo = [i for i in mine if not is_complete(output, names[i])]
    for i in todo:
        tar = output / names[i]
        for path in (tar, shard_stats_path(tar), shard_manifest_path(tar)):
            remove_temps(path)
    jobs = [(output / names[i], specs[slice(*ranges[i])]) for i in todo]
    total = sum(len(s) for _, s in jobs)
    bar = tqdm(total=total, unit="sample", disable=not progress, file=sys.stderr, desc="prepare")
    failures = 0

    def on_progress(written: int, failed: int) -> None:
        nonlocal failures
        bar.update(written + failed)
        if failed:
            failures += failed
            bar.set_postfix(failed=failures)

    try:
        written = _run(jobs, options, workers, on_progress)
    finally:
        bar.close()
    finished = all(is_complete(output, n) for n in names)
    if not finished:
        _check_part_wrote_samples(output, names, mine, part)
    merged = merge(output) if finished else None
    return {
        "output": str(output),
        "shard_size": shard_size,
        "shard_size_note": size_note,
        "shards_in_part": len(mine),
        "shards_written": len(written),
        "shards_resumed": len(mine) - len(written),
        "samples_written": sum(s["successes"] for s in written),
        "samples_failed": sum(s["failed"] for s in written),
        "merged": merged,
        # Only a complete set is compared: the part that merges reports for all.
        "overlap": find_overlap(output, Path(eval_of)) if merged is not None and eval_of is not None else None,
    }
