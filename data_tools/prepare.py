"""``prepare_shards``: list the input, plan shards, write the ones this part owns, merge when all exist.

Each shard is one task for a worker process, so workers never share a file and a shard's
content does not depend on how many workers ran. Re-running on the same output skips
complete shards (resume); ``prepare.json`` guards against resuming with different inputs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import queue
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from data_tools.files import PLAN, read_json, remove_temps, shard_manifest_path, shard_stats_path, write_json
from data_tools.manifests import ManifestColumns
from data_tools.merge import is_complete, merge, shard_names
from data_tools.plan import mark_content_duplicates, part_shards, shard_ranges
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


def _fingerprint(specs, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for spec in specs:
        digest.update(json.dumps([spec.key, spec.paths(), spec.captions, spec.label, spec.error], default=str).encode())
    return digest.hexdigest()


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
    shard_size: int = 10_000,
    shard_bytes: int | None = None,
    pattern: str = "shard-%06d.tar",
    options: SampleOptions = SampleOptions(),
    dedup: bool = False,
    workers: int = 1,
    num_parts: int = 1,
    part: int = 0,
    classnames: list[str] | None = None,
    templates: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Write WebDataset shards for ``source`` into ``output``.

    ``layout`` is ``folder`` (files sharing a stem form a sample), ``class_folders``
    (``CLASS/NAME.ext``, labels from sorted class names), ``manifest`` (csv/tsv/jsonl/parquet,
    optionally .gz) or ``auto``. Returns a summary; ``summary["merged"]`` holds the set-level
    stats once every part has finished (None while parts are outstanding).
    """
    source, output = Path(source), Path(output)
    _check_pattern(pattern)
    specs, found_classes = load_specs(source, layout, columns, output)
    if not specs:
        raise UserError(f"{source}: found no samples (expected e.g. NAME.jpg + NAME.txt, or CLASS/NAME.jpg with --class-folders)")
    if classnames and found_classes and len(classnames) != len(found_classes):
        raise UserError(f"--classnames: {len(classnames)} names given for {len(found_classes)} class folders in {source}")
    if dedup:
        mark_content_duplicates(specs)
    ranges = shard_ranges(specs, shard_size, shard_bytes)
    mine = part_shards(len(ranges), num_parts, part)

    settings = {"layout": layout, "shard_size": shard_size, "shard_bytes": shard_bytes, "pattern": pattern,
                "options": asdict(options), "dedup": dedup}
    plan = {
        "source": str(source.resolve()),
        "n_shards": len(ranges),
        "n_samples": len(specs),
        "pattern": pattern,
        "settings": settings,
        "fingerprint": _fingerprint(specs, settings),
        "classnames": classnames or found_classes,
        "templates": templates,
    }
    output.mkdir(parents=True, exist_ok=True)
    if (output / PLAN).exists():
        previous = read_json(output / PLAN)
        if previous.get("fingerprint") != plan["fingerprint"]:
            raise UserError(f"{output / PLAN}: this output was prepared from other inputs or options; use a new --output or delete it")
    write_json(output / PLAN, plan)

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
    return {
        "output": str(output),
        "shards_in_part": len(mine),
        "shards_written": len(written),
        "shards_resumed": len(mine) - len(written),
        "samples_written": sum(s["successes"] for s in written),
        "samples_failed": sum(s["failed"] for s in written),
        "merged": merge(output) if finished else None,
    }
