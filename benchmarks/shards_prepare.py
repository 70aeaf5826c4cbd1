"""Throughput of `mmcl shards prepare` against a plain single-process webdataset.ShardWriter loop.

Both sides read the same generated image+caption pairs and do the same image work
(decode, center-crop resize, JPEG encode via data_tools.image.process_image), so the ratio
measures the pipeline: worker processes, per-shard files, stats and manifests.

    python benchmarks/shards_prepare.py --samples 2000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from data_tools.image import ImageOptions, process_image
from data_tools.prepare import prepare_shards
from data_tools.sample import SampleOptions


def generate(root: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """Photo-like JPEGs (smooth gradients plus noise) so decode and encode cost what real ones do."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    ramp = np.linspace(0, 255, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    for i in range(n):
        pixels = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 12, ramp.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{i:06d}.jpg", quality=90)
        (root / f"{i:06d}.txt").write_text(f"a generated picture, number {i}", encoding="utf-8")
    return sorted(root.glob("*.jpg"))


def baseline(images: list[Path], out: Path, opts: ImageOptions, shard_size: int) -> None:
    out.mkdir()
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for path in images:
            ext, data, _ = process_image(path.read_bytes(), str(path), opts)
            caption = path.with_suffix(".txt").read_text(encoding="utf-8")
            sink.write({"__key__": path.stem, ext: data, "txt": caption})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings for each side")
    args = parser.parse_args(argv)

    opts = ImageOptions(size=224, resize_mode="center_crop", format="jpg", quality=90)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = generate(tmp / "src", args.samples, (args.width, args.height))
        def ours(workers: int):
            return lambda out: prepare_shards(tmp / "src", out, shard_size=args.shard_size, workers=workers,
                                              options=SampleOptions(image=opts), progress=False)

        runs = {"webdataset.ShardWriter, 1 process": lambda out: baseline(images, out, opts, args.shard_size),
                "mmcl shards prepare, 1 worker": ours(1),
                f"mmcl shards prepare, {args.workers} workers": ours(args.workers)}
        # (wall, cpu) seconds per run; the sides are interleaved so that they see the same machine load.
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for r in range(args.repeats):
            for i, (name, run) in enumerate(runs.items()):
                times[name].append(_timed(run, tmp / f"run{r}-{i}"))
    print(f"samples: {args.samples} ({args.width}x{args.height} jpg -> center_crop 224 jpg), shard size {args.shard_size}")
    print(f"load average before/after: {_load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name, measured in times.items():
        wall, cpu = min(measured)
        print(f"{name:36s} {args.samples / wall:8.1f} samples/s   {1000 * cpu / args.samples:.2f} cpu-ms/sample")
    base, best = min(times["webdataset.ShardWriter, 1 process"]), min(times[f"mmcl shards prepare, {args.workers} workers"])
    print(f"ratio ({args.workers} workers / baseline): {base[0] / best[0]:.2f}x")
    return 0


def _timed(fn, *args, **kwargs) -> tuple[float, float]:
    """Wall and CPU seconds (this process and its finished children) of one call."""
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall, used = time.perf_counter(), cpu()
    fn(*args, **kwargs)
    return time.perf_counter() - wall, cpu() - used


_load_before = os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
