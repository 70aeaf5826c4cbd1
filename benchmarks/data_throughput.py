"""Loader throughput: the same shards through mmcl's loader and through open_clip's `get_wds_dataset`.

Both sides stream resampled shards with open_clip's own image transform (random resized crop to 224, the same
object on both sides), its tokenizer, the same batch size and the same number of workers. Timing starts at the
first batch, so worker start-up and shuffle-buffer filling are left out on both sides. Worker RSS is read at the
first batch and at the last check (every 10 batches). A second run adds a 4-second audio clip to each sample (mmcl only: open_clip reads no
audio) and reports samples/s per worker.

    python benchmarks/data_throughput.py --samples 20000 --workers 2 --batch-size 64
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
import soundfile
import webdataset as wds
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from open_clip_train.data import get_wds_dataset
from PIL import Image

from mmcl.data import DataConfig, build_loader
from mmcl.data.audio import AudioFrontEndConfig, AudioTransform


def write_shards(out: Path, n: int, per_shard: int, size: tuple[int, int], audio_seconds: float) -> str:
    """Photo-like JPEGs (gradients plus noise, so they decode like real ones) with captions, optionally audio.
    Returns the shards' brace pattern."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    ramp = np.linspace(0, 255, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    rate = 32000
    t = np.arange(int(audio_seconds * rate)) / rate
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            pixels = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 12, ramp.shape), 0, 255).astype(np.uint8)
            jpg = Image.fromarray(pixels)
            sample = {"__key__": f"{i:07d}", "jpg": jpg, "txt": f"a generated picture, number {i}, of a gradient"}
            if audio_seconds:
                wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + rng.normal(0, 0.01, t.shape)
                flac = io.BytesIO()
                soundfile.write(flac, wave.astype("float32"), rate, format="FLAC")
                sample["flac"] = flac.getvalue()
            sink.write(sample)
    last = (n - 1) // per_shard
    return str(out / f"shard-{{000000..{last:06d}}}.tar")


def measure(loader, workers: int) -> dict:
    """Samples/s after the first batch, and the workers' mean memory (MiB) at the first and the last check."""
    gc.collect()  # let the previous loader's workers exit, so that only this loader's are measured
    psutil.wait_procs(psutil.Process().children(), timeout=60)

    def worker_memory() -> tuple[float, float] | None:
        """Mean RSS and USS (pages no other process shares: what the worker itself has grown) of the workers."""
        children = psutil.Process().children()
        if len(children) != workers:  # a worker has already finished its share
            return None
        infos = [c.memory_full_info() for c in children]
        return sum(i.rss for i in infos) / workers / 2**20, sum(i.uss for i in infos) / workers / 2**20

    count, start, memory = 0, None, []
    for index, batch in enumerate(loader):
        if start is None:
            start = time.perf_counter()
        else:
            count += len(batch["__key__"]) if isinstance(batch, dict) else len(batch[0])
        if index % 10 == 0:
            memory.append(worker_memory())
    elapsed = time.perf_counter() - start
    memory = [m for m in memory if m is not None]
    return {"samples": count, "per_s": count / elapsed, "start": memory[0], "end": memory[-1]}


def ours(pattern: str, args, transform, tokenizer, audio: AudioTransform | None = None):
    modalities = ["image", "text"] + (["audio"] if audio else [])
    transforms = {"image": transform, **({"audio": audio} if audio else {})}
    cfg = DataConfig(train_shards=pattern, modalities=modalities, batch_size=args.batch_size,
                     num_workers=args.workers, shuffle_buffer=args.shuffle_buffer, resampled=True,
                     samples_per_epoch=args.samples)
    return build_loader(cfg, transforms, tokenizer, train=True, seed=0)


def open_clips(pattern: str, args, transform, tokenizer):
    options = Namespace(train_data=pattern, train_num_samples=args.samples, dataset_resampled=True,
                        train_data_upsampling_factors=None, seed=0, batch_size=args.batch_size,
                        workers=args.workers, world_size=1)
    return get_wds_dataset(options, transform, is_train=True, epoch=0, tokenizer=tokenizer).dataloader


def report(name: str, result: dict, workers: int) -> None:
    (rss0, uss0), (rss1, uss1) = result["start"], result["end"]
    print(f"{name:36s} {result['per_s']:6.1f} samples/s ({result['per_s'] / workers:5.1f} per worker); "
          f"worker RSS {rss0:4.0f} -> {rss1:4.0f} MiB, USS {uss0:4.0f} -> {uss1:4.0f} MiB over {result['samples']} samples")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000, help="samples streamed per run")
    parser.add_argument("--distinct", type=int, default=4000, help="distinct samples in the shards")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shuffle-buffer", type=int, default=1000, help="mmcl's; open_clip's is fixed at 5000")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved; the best is reported")
    parser.add_argument("--audio-samples", type=int, default=4000, help="samples of the audio run (0: skip it)")
    args = parser.parse_args(argv)

    transform = image_transform(224, is_train=True)
    tokenizer = SimpleTokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        pattern = write_shards(Path(tmp) / "image_text", args.distinct, args.shard_size, (args.width, args.height), 0)
        load_before = os.getloadavg()[0]
        runs = {"ours": [], "open_clip": []}
        for _ in range(args.repeats):
            runs["open_clip"].append(measure(open_clips(pattern, args, transform, tokenizer), args.workers))
            runs["ours"].append(measure(ours(pattern, args, transform, tokenizer), args.workers))
        best = {side: max(results, key=lambda r: r["per_s"]) for side, results in runs.items()}
        print(f"{args.samples} samples ({args.width}x{args.height} jpg + caption -> random resized crop 224, "
              f"tokenised), batch {args.batch_size}, {args.workers} workers, {os.cpu_count()} cores, "
              f"load average before/after {load_before:.2f} / {os.getloadavg()[0]:.2f}")
        report("open_clip_train get_wds_dataset", best["open_clip"], args.workers)
        report("mmcl build_loader", best["ours"], args.workers)
        print(f"ratio mmcl / open_clip: {best['ours']['per_s'] / best['open_clip']['per_s']:.2f}x")

        if args.audio_samples:
            audio_cfg = AudioFrontEndConfig(sample_rate=16000, clip_seconds=5.0)
            pattern = write_shards(Path(tmp) / "with_audio", min(args.distinct, 1000), args.shard_size,
                                   (args.width, args.height), 4.0)
            audio_args = Namespace(**{**vars(args), "samples": args.audio_samples})
            result = measure(ours(pattern, audio_args, transform, tokenizer, AudioTransform(audio_cfg, train=True)),
                             args.workers)
            print(f"with audio (4 s flac at 32 kHz -> 16 kHz, 5 s log-mel {audio_cfg.n_mels}x{audio_cfg.num_frames}):")
            report("mmcl build_loader, image+text+audio", result, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
