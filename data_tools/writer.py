"""Write one shard: its tar, its per-sample manifest (parquet) and its stats JSON.

The tar is written under a temporary name and renamed last, so an existing ``shard-*.tar``
always means a complete shard whose stats and manifest are already beside it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pyarrow
from webdataset import TarWriter

from data_tools.errors import SampleError
from data_tools.files import parquet_bytes, temp_path, shard_manifest_path, shard_stats_path, write_atomic, write_json
from data_tools.image import RESIZE_EFFECTS
from data_tools.sample import SampleOptions, build_sample
from data_tools.spec import SampleSpec

MANIFEST_SCHEMA = pyarrow.schema(
    [
        ("key", pyarrow.string()),
        ("shard", pyarrow.string()),
        ("source", pyarrow.string()),
        ("status", pyarrow.string()),
        ("reason", pyarrow.string()),
        ("detail", pyarrow.string()),
        ("hash", pyarrow.string()),
        ("source_bytes", pyarrow.int64()),
        ("bytes", pyarrow.int64()),  # as stored in the shard
        ("image_width", pyarrow.int32()),  # as stored
        ("image_height", pyarrow.int32()),
        ("source_width", pyarrow.int32()),
        ("source_height", pyarrow.int32()),
        ("cropped", pyarrow.bool_()),  # what resizing did (image.resize_effects)
        ("padded", pyarrow.bool_()),
        ("upscaled", pyarrow.bool_()),
        ("image_sha256", pyarrow.string()),  # of the source file: exact copies in other sets (overlap.py)
        ("image_phash", pyarrow.int64()),  # near copies (fingerprints.py)
        ("image_colours", pyarrow.binary()),
        ("audio_sha256", pyarrow.string()),
        ("audio_seconds", pyarrow.float64()),
        ("captions", pyarrow.int32()),
        ("caption_chars", pyarrow.int32()),  # mean length of the sample's captions
        ("label", pyarrow.int64()),  # a single label; a label list is in `labels`, so readers of `label` see no lists
        ("labels", pyarrow.list_(pyarrow.int64())),
    ]
)


def write_shard(
    tar_path: Path, specs: list[SampleSpec], opts: SampleOptions, on_sample: Callable[[bool], None] | None = None
) -> dict:
    """Process and write ``specs`` to ``tar_path``; return the shard's stats."""
    started = time.time()
    records, failures, modalities = [], [], Counter()
    tmp = temp_path(tar_path)
    with open(tmp, "wb") as stream:
        # mtime fixed so that a resumed run writes byte-identical shards.
        tar = TarWriter(stream, encoder=False, mtime=0)
        for spec in specs:
            record = {"key": spec.key, "shard": tar_path.name, "source": spec.source}
            try:
                sample, info = build_sample(spec, opts)
                tar.write(sample)
                record.update(info, status="ok")
                modalities.update(k for k in sample if k != "__key__")
            except SampleError as err:
                record.update(status="failed", reason=err.reason, detail=err.detail)
                failures.append({"key": spec.key, "source": spec.source, "reason": err.reason, "detail": err.detail})
            records.append(record)
            if on_sample is not None:
                on_sample(record["status"] == "ok")
        tar.close()
    ok = len(specs) - len(failures)
    resized = Counter(effect for r in records for effect in RESIZE_EFFECTS if r.get(effect))
    stats = {
        "shard": tar_path.name,
        "count": len(specs),
        "successes": ok,
        "failed": len(failures),
        "failures_by_reason": dict(sorted(Counter(f["reason"] for f in failures).items())),
        "failures": failures,
        "entries_by_extension": dict(sorted(modalities.items())),
        "images_resized": {effect: resized[effect] for effect in RESIZE_EFFECTS},
        "bytes": tmp.stat().st_size,
        "start_time": started,
        "duration_seconds": round(time.time() - started, 3),
    }
    write_atomic(shard_manifest_path(tar_path), parquet_bytes(pyarrow.Table.from_pylist(records, schema=MANIFEST_SCHEMA)))
    write_json(shard_stats_path(tar_path), stats)
    os.replace(tmp, tar_path)
    return stats
