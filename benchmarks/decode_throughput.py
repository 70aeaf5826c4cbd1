"""Decode throughput of large JPEGs: mmcl's training loader with and without JPEG draft, and open_clip's loader.

Shards of photo-like 1024x768 JPEGs (quality 90) with captions are streamed, resampled, through
  mmcl draft   mmcl's build_loader as configured by default (data.image_limits.jpeg_draft: true): each JPEG is
               decoded at the 1/2, 1/4 or 1/8 scale the random resized crop still needs
  mmcl full    the same with jpeg_draft: false, every JPEG decoded in full
  open_clip    open_clip_train's get_wds_dataset (wds.decode("pilrgb"): every JPEG decoded in full)
with open_clip's train transform (random resized crop to 224, then to 112; the same object on every side), its
tokenizer and the same batch size, in the main process (one torch thread, as in a worker) and in one loader worker:
samples/s per worker. Timing starts at the first batch, so worker start-up and shuffle-buffer filling are left out
on every side. Runs of the three sides are interleaved; the best of --repeats is reported.

    python benchmarks/decode_throughput.py            # about 10 minutes on a quiet 2-core machine
    python benchmarks/decode_throughput.py --quick    # a few images: checks that it runs (a minute or two)
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import psutil
import torch
import webdataset as wds
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from PIL import Image

from data_throughput import open_clips  # a sibling script: benchmarks/ is on sys.path when run as one
from mmcl.data import DataConfig, build_loader
from mmcl.data.image import ImageLimits, decode, short_side_needed

SIZE = (1024, 768)


def photo_jpeg(rng: np.random.Generator) -> bytes:
    """Smooth colour regions (a coarse random field, upsampled) with sensor-like noise: decodes like a photo."""
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(SIZE, Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32) + rng.normal(0, 6, (SIZE[1], SIZE[0], 3)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_shards(out: Path, n: int, per_shard: int) -> tuple[str, float]:
    """The shards' brace pattern and the JPEGs' mean size in KiB."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    total = 0
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            jpg = photo_jpeg(rng)
            total += len(jpg)
            sink.write({"__key__": f"{i:07d}", "jpg": jpg, "txt": f"a generated photo, number {i}"})
    return str(out / f"shard-{{000000..{(n - 1) // per_shard:06d}}}.tar"), total / n / 1024


def mmcl_loader(pattern: str, args, transform, tokenizer, draft: bool):
    cfg = DataConfig(train_shards=pattern, batch_size=args.batch_size, num_workers=args.workers, resampled=True,
                     samples_per_epoch=args.samples, image_limits=ImageLimits(jpeg_draft=draft))
    return build_loader(cfg, {"image": transform}, tokenizer, train=True, seed=0)


def samples_per_s(loader) -> float:
    """Samples/s after the first batch."""
    gc.collect()  # let the previous loader's worker exit, so that it does not compete with this one
    psutil.wait_procs(psutil.Process().children(), timeout=60)
    count, start = 0, None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
        else:
            count += len(batch["__key__"]) if isinstance(batch, dict) else len(batch[0])
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320, help="distinct JPEGs in the shards")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1280, help="samples streamed per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, interleaved; the best is reported")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 112], help="the towers' input sizes")
    parser.add_argument("--quick", action="store_true", help="32 images, 128 samples per run in batches of 32, "
                        "one repeat: checks that the benchmark runs; its figures are rough")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.shard_size, args.samples, args.batch_size, args.repeats = 32, 16, 128, 32, 1

    torch.set_num_threads(1)  # in-process as in a loader worker (where the DataLoader sets it): one thread each
    tokenizer = SimpleTokenizer()
    sides = ("mmcl draft", "mmcl full", "open_clip")
    with tempfile.TemporaryDirectory() as tmp:
        pattern, kib = write_shards(Path(tmp) / "photos", args.images, args.shard_size)
        sample = photo_jpeg(np.random.default_rng(0))
        load_before = os.getloadavg()[0]
        rows = []
        for size in args.sizes:
            transform = image_transform(size, is_train=True)
            drafted = decode(sample, ImageLimits(), short_side_needed(transform)).size
            for workers in (0, 1):
                run = Namespace(**{**vars(args), "workers": workers})
                make = {"mmcl draft": lambda: mmcl_loader(pattern, run, transform, tokenizer, True),
                        "mmcl full": lambda: mmcl_loader(pattern, run, transform, tokenizer, False),
                        "open_clip": lambda: open_clips(pattern, run, transform, tokenizer)}
                results = {side: [] for side in sides}
                for _ in range(args.repeats):
                    for side in sides:
                        results[side].append(samples_per_s(make[side]()))
                rows.append((size, drafted, "1 worker" if workers else "in-process",
                             {side: max(r) for side, r in results.items()}))

        print(f"{args.samples} samples per run from {args.images} {SIZE[0]}x{SIZE[1]} JPEGs (quality 90, mean "
              f"{kib:.0f} KiB) + caption -> random resized crop, tokenised; batch {args.batch_size}, best of "
              f"{args.repeats}; {os.cpu_count()} cores, load average before/after {load_before:.2f} / "
              f"{os.getloadavg()[0]:.2f}")
        print(f"{'':33}{'samples/s per worker':^32}  {'mmcl draft speed-up':^26}")
        print(f"{'crop':>4} {'draft decodes':>13} {'loader':>11}   {'mmcl draft':>10} {'mmcl full':>10} "
              f"{'open_clip':>10}  {'over full':>10} {'over open_clip':>15}")
        for size, (w, h), where, best in rows:
            draft = best["mmcl draft"]
            print(f"{size:4d} {f'{w}x{h}':>13} {where:>11}   {draft:10.1f} {best['mmcl full']:10.1f} "
                  f"{best['open_clip']:10.1f}  {draft / best['mmcl full']:9.2f}x {draft / best['open_clip']:14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
