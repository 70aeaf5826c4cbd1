"""Resume cost against the position in the epoch: time from resuming a data stream to its first new batch, at 10 %
and at 90 % of an exact epoch, and the ratio (the aim: 90 % within 1.5x of 10 %).

What is timed is the data side of a resume, not a whole training launch (model building, checkpoint loading and
process start-up do not depend on the position): a fresh `DataStream` over `build_loader`, `load_state_dict` with
the saved position (JSON round-tripped, as a checkpoint stores it), then the first `next()`, which includes starting
the loader workers, seeking to the position and decoding one batch. The positions are taken by streaming the epoch
once from its start. For comparison, the same positions resumed the way a loader without a position must be:
replaying (decoding and dropping) every batch already consumed in the epoch.

Shards: `--samples` small photo-like JPEGs with captions, `--shard-size` per shard, with the sizes.json that
`mmcl shards prepare` writes.

    python benchmarks/resume_cost.py --samples 20000 --workers 2 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from PIL import Image

from mmcl.data import DataConfig, build_loader
from mmcl.training.data_stream import DataStream


def write_shards(out: Path, n: int, per_shard: int, side: int) -> None:
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    ramp = np.linspace(0, 255, side)[None, :, None] * np.ones((side, 1, 3))
    sizes = {}
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            pixels = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 12, ramp.shape), 0, 255).astype(np.uint8)
            sink.write({"__key__": f"{i:07d}", "jpg": Image.fromarray(pixels), "txt": f"a gradient, number {i}"})
            name = f"shard-{i // per_shard:06d}.tar"
            sizes[name] = sizes.get(name, 0) + 1
    (out / "sizes.json").write_text(json.dumps(sizes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000, help="samples in the epoch (at least 20000 for the "
                        "figure the issue asks for)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--side", type=int, default=64, help="image width and height")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="resumes per position; the median is reported")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay comparison")
    args = parser.parse_args(argv)

    transforms = {"image": image_transform(args.side, is_train=True)}
    tokenizer = SimpleTokenizer(context_length=32)
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        write_shards(shards, args.samples, args.shard_size, args.side)
        cfg = DataConfig(train_shards=str(shards), batch_size=args.batch_size, num_workers=args.workers,
                         shuffle_buffer=args.shuffle_buffer)

        def stream() -> DataStream:
            return DataStream(lambda epoch: build_loader(cfg, transforms, tokenizer, train=True, epoch=epoch, seed=0),
                              seed=0, rank=0)

        per_epoch = build_loader(cfg, transforms, tokenizer, train=True).batches_per_epoch
        fractions = (0.1, 0.9)
        wanted = {round(f * per_epoch): f for f in fractions}
        states, source = {}, stream()
        for done in range(max(wanted) + 1):
            if done in wanted:
                states[wanted[done]] = json.loads(json.dumps(source.state_dict()))
            next(source)
        del source

        def resume(state: dict) -> float:
            start = time.perf_counter()
            resumed = stream()
            resumed.load_state_dict(state)
            next(resumed)
            return time.perf_counter() - start

        print(f"{args.samples} samples ({args.side}x{args.side} jpg + caption) in shards of {args.shard_size}, "
              f"batch {args.batch_size}, {args.workers} workers, shuffle buffer {args.shuffle_buffer}, "
              f"{per_epoch} batches per epoch; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        seek = {}
        for f in fractions:
            seek[f] = statistics.median(resume(states[f]) for _ in range(args.repeats))
            print(f"resume at {f:4.0%} (batch {round(f * per_epoch):4d}) to first new batch: {seek[f]:6.2f} s")
        print(f"ratio 90% / 10%: {seek[0.9] / seek[0.1]:.2f}x (target: at most 1.5x)")
        if not args.no_replay:
            replay = {f: resume({k: v for k, v in states[f].items() if k != "loader"}) for f in fractions}
            print("replaying the consumed batches instead (as before): " +
                  ", ".join(f"{f:.0%} {t:.2f} s" for f, t in replay.items()) +
                  f"; ratio {replay[0.9] / replay[0.1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
