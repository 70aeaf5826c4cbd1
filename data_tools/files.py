"""Output-directory names and atomic writes shared by prepare, merge, verify and stats."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

PLAN = "prepare.json"
SIZES = "sizes.json"
STATS = "stats.json"
MANIFEST = "manifest.parquet"
CLASSNAMES = "classnames.txt"
TEMPLATES = "zeroshot_classification_templates.txt"
NSHARDS = "nshards.txt"
TMP_SUFFIX = ".tmp"


def shard_stats_path(tar: Path) -> Path:
    return tar.with_name(tar.stem + "_stats.json")


def shard_manifest_path(tar: Path) -> Path:
    return tar.with_suffix(".parquet")


def temp_path(path: Path) -> Path:
    """Where ``path`` is written before its rename. The pid keeps two writers of the same file (two
    parts merging at once, or a worker orphaned by a killed run next to the resumed run) apart."""
    return path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")


def remove_temps(path: Path) -> None:
    """Delete what interrupted writers of ``path`` left behind."""
    for stale in path.parent.glob(f"{glob.escape(path.name)}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write beside the target and rename: a reader (or a resumed run) never sees half a file."""
    tmp = temp_path(path)
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def parquet_bytes(table) -> bytes:
    import pyarrow.parquet

    out = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(table, out)
    return out.getvalue().to_pybytes()


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_sizes(output: Path, counts: dict[str, int]) -> None:
    """sizes.json: shard file name -> samples in it, in shard order; what a training reader looks for."""
    write_json(output / SIZES, counts)


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
