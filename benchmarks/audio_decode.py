"""Audio decode throughput: 44.1 kHz Ogg Vorbis and FLAC clips of 3-30 s through the training loader's audio path.

Shards of stereo 44.1 kHz clips (a few harmonic voices that change note every 0.2-1 s, over light noise: they
compress and decode like music) are streamed through mmcl's build_loader with the `tiny-audio` model's training
transform (seeked 2 s window ▶ mono ▶ resample to 16 kHz ▶ log-mel), with
  torchaudio   the resampler of mmcl 0.1 (torchaudio.functional.resample: its 160 x 475 kernel is rebuilt for
               every clip and mostly multiplies zeros)
  mmcl         mmcl.data.audio.resample (the same windowed-sinc filter, its non-zero taps precomputed once)
  16k mono     the same clips stored at 16 kHz mono, as `mmcl shards prepare --audio-rate 16000 --audio-mono` stores
               them: nothing to resample, half the channels to decode
in the main process (one torch thread, as in a worker) and in one loader worker: samples/s per worker. Timing starts
at the first batch; runs of the sides are interleaved and the best of --repeats is reported. A second table splits
one clip's cost into its stages (median of many calls).

    python benchmarks/audio_decode.py               # about 10 minutes on a 2-core machine
    python benchmarks/audio_decode.py --quick       # a few clips: checks that it runs

Measured (2 cores shared with other jobs, load average 1.5; 48 clips of 3-30 s per set, best of 3), samples/s in
one loader worker: Ogg 119 (torchaudio) / 157 (mmcl), 1.32x; FLAC 155 / 200, 1.29x; 16k mono 515. Resampling
a 2 s window from 44.1 to 16 kHz: 1.44 ms (torchaudio) against 0.22 ms (mmcl); decoding the window: 4.9 ms (Ogg
Vorbis), 3.0 ms (FLAC), 0.76 ms (16 kHz mono FLAC); log-mel 0.7 ms.

`--write-shards DIR` writes a training shard set instead (a PNG, a caption and a clip per sample, the clip as
`--format ogg|flac` at `--rate`, or at 16 kHz mono with `--prepared`), for timing the data wait of a real run
(`data_wait_fraction` in DIR/metrics.jsonl; resampled shards, so that no epoch boundary restarts the workers):

    python benchmarks/audio_decode.py --write-shards /tmp/ogg44k --format ogg --clips 256
    mmcl train configs/demo_emoji.yaml data.train_shards=/tmp/ogg44k train.output_dir=/tmp/run \
        train.steps=40 train.log_every=10 data.resampled=true data.samples_per_epoch=1000000
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile
import torch
import torchaudio
import webdataset as wds
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image

from mmcl.data import DataConfig, build_loader
from mmcl.data import audio as mmcl_audio
from mmcl.models import create_model

FORMATS = {"ogg": "OGG", "flac": "FLAC"}


def music(rng: np.random.Generator, seconds: float, rate: int, channels: int) -> np.ndarray:
    """[frames, channels] float32: three harmonic voices changing note every 0.2-1 s, panned, over light noise."""
    n = int(seconds * rate)
    out = np.zeros((n, channels), np.float32)
    t = np.arange(n) / rate
    for voice in range(3):
        pan = rng.uniform(0.2, 0.8, channels) if channels > 1 else np.ones(1)
        start = 0
        while start < n:
            stop = min(n, start + int(rng.uniform(0.2, 1.0) * rate))
            f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
            seg = t[start:stop] - t[start]
            note = sum(np.sin(2 * np.pi * f0 * k * seg) / k for k in range(1, 6)) * np.exp(-3 * seg)
            out[start:stop] += (0.15 * note)[:, None] * pan[None]
            start = stop
    out += rng.normal(0, 0.01, out.shape).astype(np.float32)
    return np.clip(out, -1, 1)


def encode(wave: np.ndarray, rate: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, format=FORMATS[fmt])
    return buf.getvalue()


def prepared(data: bytes) -> bytes:
    """The clip as `mmcl shards prepare --audio-rate 16000 --audio-mono` stores it (16-bit FLAC)."""
    from data_tools.audio import AudioOptions, process_audio

    return process_audio(data, "clip", AudioOptions(sample_rate=16000, mono=True))[0]


def png(rng: np.random.Generator) -> bytes:
    pixels = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((72, 72), Image.BICUBIC)
    buf = io.BytesIO()
    pixels.save(buf, format="PNG")
    return buf.getvalue()


def clips(n: int, fmt: str, rate: int, channels: int, seconds: tuple[float, float], seed: int = 0):
    """(key, encoded clip, duration) for n clips of uniformly random length."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        duration = float(rng.uniform(*seconds))
        yield f"{i:06d}", encode(music(rng, duration, rate, channels), rate, fmt), duration


def write_shards(out: Path, n: int, fmt: str, rate: int, channels: int, seconds: tuple[float, float],
                 per_shard: int, as_prepared: bool = False, with_image_text: bool = True) -> str:
    """A shard set of n samples; returns its brace pattern."""
    rng = np.random.default_rng(1)
    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for key, data, _ in clips(n, fmt, rate, channels, seconds):
            sample = {"__key__": key}
            if as_prepared:
                sample["flac"] = prepared(data)
            else:
                sample[fmt] = data
            if with_image_text:
                sample["png"], sample["txt"] = png(rng), f"generated clip number {key}"
            sink.write(sample)
    return str(out / f"shard-{{000000..{(n - 1) // per_shard:06d}}}.tar")


def torchaudio_resample(waveform: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """The resampler of mmcl 0.1 (the benchmark's rates are far inside its kernel budget)."""
    return torchaudio.functional.resample(waveform, rate, target)


def samples_per_s(pattern: str, args, transform, workers: int) -> float:
    """Samples/s after the first batch, modalities [audio] only."""
    gc.collect()  # let the previous loader's worker exit, so that it does not compete with this one
    psutil.wait_procs(psutil.Process().children(), timeout=60)
    cfg = DataConfig(train_shards=pattern, batch_size=args.batch_size, num_workers=workers, resampled=True,
                     samples_per_epoch=args.samples, modalities=["audio"], shuffle_buffer=16)
    count, start = 0, None
    for batch in build_loader(cfg, {"audio": transform}, SimpleTokenizer(), train=True, seed=0):
        if start is None:
            start = time.perf_counter()
        else:
            count += len(batch["__key__"])
    return count / (time.perf_counter() - start)


def median_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def stage_table(sets: dict[str, list[bytes]], transform, calls: int) -> None:
    """One clip's cost, stage by stage (median ms), for each shard set's first clips."""
    cfg = transform.cfg
    print(f"\nper clip, median of {calls} calls (ms); window {cfg.clip_seconds} s")
    print(f"{'clips':>18} {'decode window':>14} {'resample (torchaudio)':>22} {'resample (mmcl)':>16} "
          f"{'log-mel':>8} {'whole load':>11}")
    for name, datas in sets.items():
        row = {k: [] for k in ("decode", "ta", "mmcl", "mel", "load")}
        for data in datas:
            torch.manual_seed(0)
            wave, rate = mmcl_audio.decode(data, cfg.clip_seconds, random_start=True)
            mono = wave.mean(dim=0, keepdim=True)
            row["decode"].append(median_ms(lambda: mmcl_audio.decode(data, cfg.clip_seconds, True), calls))
            if rate != cfg.sample_rate:
                row["ta"].append(median_ms(lambda: torchaudio_resample(mono, rate, cfg.sample_rate), calls))
                row["mmcl"].append(median_ms(lambda: mmcl_audio.resample(mono, rate, cfg.sample_rate), calls))
                mono = mmcl_audio.resample(mono, rate, cfg.sample_rate)
            clip = mmcl_audio.fit_length(mono, cfg.num_samples, random_crop=False)
            row["mel"].append(median_ms(lambda: transform.to_db(transform.mel(clip)), calls))
            row["load"].append(median_ms(lambda: transform.load(data), calls))
        mean = {k: (f"{statistics.mean(v):.2f}" if v else "-") for k, v in row.items()}
        print(f"{name:>18} {mean['decode']:>14} {mean['ta']:>22} {mean['mmcl']:>16} {mean['mel']:>8} "
              f"{mean['load']:>11}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=48, help="distinct clips per shard set")
    parser.add_argument("--seconds", type=float, nargs=2, default=(3.0, 30.0), help="clip length range")
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1536, help="samples streamed per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved; the best is reported")
    parser.add_argument("--quick", action="store_true", help="8 clips of 3-6 s, 128 samples per run in batches "
                        "of 32, one repeat: checks that the benchmark runs; its figures are rough")
    parser.add_argument("--write-shards", type=Path, help="write a training shard set (PNG + caption + clip per "
                        "sample) here and exit")
    parser.add_argument("--format", choices=sorted(FORMATS), default="ogg", help="with --write-shards")
    parser.add_argument("--prepared", action="store_true", help="with --write-shards: store the clips at 16 kHz "
                        "mono, as `mmcl shards prepare --audio-rate 16000 --audio-mono` does")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.seconds, args.shard_size = 8, (3.0, 6.0), 4
        args.samples, args.batch_size, args.repeats = 128, 32, 1
    seconds = tuple(args.seconds)
    if args.write_shards:
        pattern = write_shards(args.write_shards, args.clips, args.format, args.rate, args.channels, seconds,
                               args.shard_size, as_prepared=args.prepared)
        print(pattern)
        return 0

    torch.set_num_threads(1)  # in-process as in a loader worker (where the DataLoader sets it): one thread each
    _, transforms, _ = create_model("tiny-audio")
    transform = transforms.train["audio"]
    current = mmcl_audio.resample
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}  # name ▶ (pattern, resampler)
        first = {}
        for fmt in FORMATS:
            pattern = write_shards(Path(tmp) / fmt, args.clips, fmt, args.rate, args.channels, seconds,
                                   args.shard_size, with_image_text=False)
            sets[f"{fmt} torchaudio"] = (pattern, torchaudio_resample)
            sets[f"{fmt} mmcl"] = (pattern, current)
            first[f"{fmt} {args.rate // 1000}k"] = [d for _, d, _ in clips(4, fmt, args.rate, args.channels, seconds)]
        pattern = write_shards(Path(tmp) / "prepared", args.clips, "ogg", args.rate, args.channels, seconds,
                               args.shard_size, as_prepared=True, with_image_text=False)
        sets["16k mono"] = (pattern, current)
        first["16k mono flac"] = [prepared(d) for d in first[f"ogg {args.rate // 1000}k"]]
        load_before = os.getloadavg()[0]
        rows = []
        for workers in (0, 1):
            results = {name: [] for name in sets}
            for _ in range(args.repeats):
                for name, (pattern, resampler) in sets.items():
                    mmcl_audio.resample = resampler  # forked workers inherit it
                    try:
                        results[name].append(samples_per_s(pattern, args, transform, workers))
                    finally:
                        mmcl_audio.resample = current
            rows.append(("1 worker" if workers else "in-process", {k: max(v) for k, v in results.items()}))
        print(f"{args.samples} samples per run from {args.clips} clips of {seconds[0]:g}-{seconds[1]:g} s "
              f"({args.channels} channels, {args.rate} Hz) per set ▶ tiny-audio's training transform "
              f"({transform.cfg.clip_seconds:g} s window, {transform.cfg.sample_rate} Hz log-mel); batch "
              f"{args.batch_size}, best of {args.repeats}; {os.cpu_count()} cores, load average before/after "
              f"{load_before:.2f} / {os.getloadavg()[0]:.2f}")
        print(f"{'samples/s per worker':>22}" + "".join(f"{name:>16}" for name in sets)
              + f"{'ogg mmcl/ta':>13}{'flac mmcl/ta':>14}")
        for where, best in rows:
            print(f"{where:>22}" + "".join(f"{best[name]:16.1f}" for name in sets)
                  + f"{best['ogg mmcl'] / best['ogg torchaudio']:12.2f}x"
                  + f"{best['flac mmcl'] / best['flac torchaudio']:13.2f}x")
        stage_table(first, transform, calls=5 if args.quick else 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
