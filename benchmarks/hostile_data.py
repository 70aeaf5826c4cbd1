"""Hostile data through every stage: good samples kept (must be all), bad ones counted by reason, worker memory.

The corpus is tests/hostile_corpus.py's: good image-text(-audio) samples, among them a long audio file, a 48001 Hz
clip and a 1 MB caption, mixed with every kind of bad sample (wrong json shapes, absurd labels, NaN/empty/absurd-
rate audio, truncated, empty and mislabelled images, a 1x100000 strip, a 96 MP bomb, a repeated key, a tar cut
mid-member, a file that is not a tar). The same good samples alone form the clean run. Stages:

  prepare (files)     the samples as KEY.jpg/.png/.flac/.txt/.json files through `mmcl shards prepare`
  prepare (manifest)  a JSONL manifest of the same files, captions and labels
  verify              `mmcl shards verify` on the hostile shards
  train loader        one epoch, 2 workers, batch 1 (so no partial batch is dropped), peak RSS of each worker
  eval <task>         every evaluation task, 2 workers, peak RSS of each worker

    python benchmarks/hostile_data.py [--long-audio-seconds 3600] [--model vit-b-32-audio]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import tarfile
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the corpus generator lives in tests/

from data_tools.prepare import prepare_shards
from mmcl.data import DataConfig, build_loader
from mmcl.eval import EvalConfig, run_tasks
from mmcl.models import create_model
from pipelines.cli import main as mmcl
from tests.hostile_corpus import hostile_samples, write_corpus, write_files

class WorkerPeak:
    """Peak RSS of each child process (loader workers) while the block runs, sampled every 20 ms."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.wait(0.02):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return max(self.peaks.values(), default=0) / 2**20


def report(stage: str, kept: set[str], good: set[str], counted: dict, peak_mib: float | None = None,
           clean_mib: float | None = None) -> None:
    lost = sorted(good - kept)
    line = f"{stage:<34} good kept {len(kept & good):>3}/{len(good):<3}"
    line += "  ALL" if not lost else f"  LOST {lost}"
    line += f"  bad counted {sum(counted.values()):>3}"
    if peak_mib is not None:
        line += f"  worker peak RSS {peak_mib:6.0f} MiB"
        if clean_mib:
            line += f" (clean {clean_mib:.0f} MiB, {peak_mib / clean_mib:.2f}x)"
    print(line)
    print("    by reason: " + ", ".join(f"{n} {r}" for r, n in sorted(counted.items())))


def train_epoch(folder: Path, transforms, tokenizer) -> tuple[set[str], Counter, float]:
    cfg = DataConfig(train_shards=str(folder), batch_size=1, num_workers=2, shuffle_buffer=4,
                     modalities=["image", "text", "audio"])
    keys, failures = set(), Counter()
    with WorkerPeak() as peak:
        for batch in build_loader(cfg, transforms.train, tokenizer, train=True):
            keys.update(batch["__key__"])
            failures.update(batch["__failures__"])
    return keys, failures, peak.mib


def eval_task(folder: Path, task: dict, model, transforms, tokenizer) -> tuple[int, dict, float]:
    (task,) = EvalConfig(tasks=[{"data": {"path": str(folder)}, **task}]).tasks
    with WorkerPeak() as peak:
        (result,) = run_tasks(model, transforms.eval, tokenizer, [task], num_workers=2).values()
    return result["dataset"]["num_items"], result["dataset"]["skipped"], peak.mib


def prepare(source: Path, output: Path, manifest: bool) -> tuple[set[str], dict]:
    summary = prepare_shards(source, output, layout="manifest" if manifest else "folder", progress=False,
                             shard_size=16)
    kept = set()
    for tar in sorted(output.glob("*.tar")):
        with tarfile.open(tar) as t:
            kept.update(m.name.split(".", 1)[0] for m in t.getmembers())
    merged = summary["merged"] or {}
    return kept, merged.get("failures_by_reason") or merged.get("skipped_when_prepared") or {
        "failed": summary["samples_failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-audio-seconds", type=float, default=3600)
    parser.add_argument("--model", default="tiny-audio", help="A built-in model with image, text and audio towers "
                        "(its transforms decode the samples), e.g. vit-b-32-audio for 224 px images")
    args = parser.parse_args()
    logging.getLogger("mmcl.data").setLevel(logging.ERROR)  # the per-sample warnings would bury the table
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    hostile = write_corpus(root / "hostile", long_audio_seconds=args.long_audio_seconds)
    clean = write_corpus(root / "clean", long_audio_seconds=args.long_audio_seconds, include_bad=False)
    samples, _ = hostile_samples(long_audio_seconds=args.long_audio_seconds)
    good = hostile.good - {"goodcut"}  # the cut shard's sample exists only in the shards
    model, transforms, tokenizer = create_model(args.model)
    print(f"corpus: {len(hostile.good)} good, {len(hostile.bad)} bad samples, 1 repeated key, "
          f"{len(hostile.broken_shards)} broken shards; long audio {args.long_audio_seconds:.0f} s\n")

    files = write_files(root / "files", samples)
    for name, source, manifest in (("prepare (files)", files, False),
                                   ("prepare (manifest)", files / "manifest.jsonl", True)):
        start = time.perf_counter()
        kept, counted = prepare(source, root / name.replace(" ", "_"), manifest)
        report(f"{name} {time.perf_counter() - start:.1f}s", kept, good, counted)

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = mmcl(["shards", "verify", str(hostile.shards[0].parent)])
    named = [k for k in hostile.bad if k in out.getvalue()]
    print(f"{'verify':<34} exit status {status}, names {len(named)}/{len(hostile.bad)} bad keys and "
          f"{sum(n in out.getvalue() for n in hostile.broken_shards)}/{len(hostile.broken_shards)} broken shards")

    clean_keys, _, clean_mib = train_epoch(clean.shards[0].parent, transforms, tokenizer)
    assert clean_keys == clean.good, "the clean run lost samples"
    keys, failures, mib = train_epoch(hostile.shards[0].parent, transforms, tokenizer)
    report("train loader (2 workers)", keys, hostile.good, failures, mib, clean_mib)

    tasks = {"zero-shot image": {"type": "zeroshot_classification", "modality": "image"},
             "zero-shot audio": {"type": "zeroshot_classification", "modality": "audio"},
             "retrieval image-text": {"type": "retrieval", "modalities": ["image", "text"]},
             "geometry image-text": {"type": "geometry", "modalities": ["image", "text"]},
             "retrieval image+text->audio": {"type": "multimodal_retrieval",
                                             "modalities": ["image", "text", "audio"]}}
    for name, task in tasks.items():
        clean_items, _, clean_mib = eval_task(clean.shards[0].parent, task, model, transforms, tokenizer)
        items, skipped, mib = eval_task(hostile.shards[0].parent, task, model, transforms, tokenizer)
        print(f"{'eval ' + name:<34} items {items} (clean {clean_items})  worker peak RSS {mib:6.0f} MiB "
              f"(clean {clean_mib:.0f} MiB, {mib / clean_mib:.2f}x)")
        print("    skipped: " + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())))


if __name__ == "__main__":
    main()
