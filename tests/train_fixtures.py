"""Small captioned-shape shards and a short training config for the training tests."""

from __future__ import annotations

import io
import random
from pathlib import Path

import webdataset as wds

from data_tools import demo_shapes


def shape_shards(folder: Path, num_shards: int, per_shard: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = demo_shapes.classnames()
    for s in range(num_shards):
        with wds.TarWriter(str(folder / f"shard-{s:06d}.tar")) as writer:
            for i in range(per_shard):
                name = rng.choice(names)
                buf = io.BytesIO()
                demo_shapes.draw(*name.split(), rng).save(buf, format="JPEG")
                writer.write({"__key__": f"{s:03d}_{i:04d}", "jpg": buf.getvalue(), "txt": f"a photo of a {name}"})
    return folder


def overrides(shards: Path, output_dir: Path, **extra) -> list[str]:
    base = {
        "data.train_shards": str(shards), "train.output_dir": str(output_dir), "data.batch_size": 8,
        "data.num_workers": 1, "data.shuffle_buffer": 16, "train.log_every": 1, "optim.warmup_steps": 2,
        "train.trackers": "[]",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
