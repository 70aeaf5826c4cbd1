"""Combine per-shard outputs into the set-level files: sizes.json, stats.json, manifest.parquet,
and for labelled sets the CLIP_benchmark ``wds/`` files (classnames, templates, nshards)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow
import pyarrow.parquet

from data_tools.files import (
    CLASSNAMES,
    MANIFEST,
    NSHARDS,
    PLAN,
    STATS,
    TEMPLATES,
    parquet_bytes,
    read_json,
    shard_manifest_path,
    shard_stats_path,
    write_atomic,
    write_json,
    write_sizes,
)
from data_tools.image import RESIZE_EFFECTS
from mmcl.errors import UserError


def shard_names(plan: dict) -> list[str]:
    return [plan["pattern"] % i for i in range(plan["n_shards"])]


def is_complete(output: Path, name: str) -> bool:
    tar = output / name
    return tar.exists() and shard_stats_path(tar).exists() and shard_manifest_path(tar).exists()


def read_plan(output: Path) -> dict:
    path = output / PLAN
    if not path.exists():
        raise UserError(f"{path}: not found; {output} was not written by `mmcl shards prepare`")
    return read_json(path)


def merge(output: Path) -> dict:
    """Write the set-level files once every shard of the plan exists; return the merged stats."""
    output = Path(output)
    plan = read_plan(output)
    names = shard_names(plan)
    missing = [n for n in names if not is_complete(output, n)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{output}: {len(missing)} shard(s) not written yet ({shown}); run the remaining parts or re-run prepare")
    per_shard = [read_json(shard_stats_path(output / n)) for n in names]
    reasons, extensions, resized = Counter(), Counter(), Counter()
    for s in per_shard:
        reasons.update(s["failures_by_reason"])
        extensions.update(s["entries_by_extension"])
        resized.update(s.get("images_resized", {}))
    stats = {
        "shards": len(names),
        "count": sum(s["count"] for s in per_shard),
        "successes": sum(s["successes"] for s in per_shard),
        "failed": sum(s["failed"] for s in per_shard),
        "failures_by_reason": dict(sorted(reasons.items())),
        "entries_by_extension": dict(sorted(extensions.items())),
        # None when a resumed shard was written by a version that did not count them.
        "images_resized": {e: resized[e] for e in RESIZE_EFFECTS} if all("images_resized" in s for s in per_shard) else None,
        "bytes": sum(s["bytes"] for s in per_shard),
        "duration_seconds": round(sum(s["duration_seconds"] for s in per_shard), 3),
        "failures": [f for s in per_shard for f in s["failures"]],
    }
    tables = [pyarrow.parquet.read_table(shard_manifest_path(output / n)) for n in names]
    # "default" fills the columns a shard written by an earlier version lacks with nulls.
    write_atomic(output / MANIFEST, parquet_bytes(pyarrow.concat_tables(tables, promote_options="default")))
    if plan.get("classnames"):
        write_atomic(output / CLASSNAMES, "".join(c + "\n" for c in plan["classnames"]))
        if plan.get("templates"):  # else evaluation uses mmcl's built-in set for the modality, as on every route
            write_atomic(output / TEMPLATES, "".join(t + "\n" for t in plan["templates"]))
        write_atomic(output / NSHARDS, f"{len(names)}\n")
    write_json(output / STATS, stats)
    # sizes.json last: it is what a training reader looks for, so it only appears for a finished set.
    write_sizes(output, {n: s["successes"] for n, s in zip(names, per_shard)})
    require_samples(stats, f"{output}: none of the {stats['count']} samples was written", str(output / STATS))
    return stats


def require_samples(stats: dict, headline: str, details: str) -> None:
    """A run that wrote nothing is an error, not a set of empty shards: say why, with the commonest reasons."""
    if stats["successes"] or not stats["count"]:
        return
    top = Counter(stats["failures_by_reason"]).most_common(3)
    example = next(f for f in stats["failures"] if f["reason"] == top[0][0])
    reasons = ", ".join(f"{n} {reason}" for reason, n in top)
    raise UserError(f"{headline}: skipped as {reasons} (e.g. {example['detail'] or example['key']}); "
                    f"every skipped sample is listed in {details}")
