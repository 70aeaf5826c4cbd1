"""Training without the samples an audit flagged: `data.drop_flagged` reads a per-sample score table (the Parquet
file `mmcl audit` writes) and the training stream passes over the chosen keys before decoding them, counting them
under FLAGGED. No shard is rewritten, so the same shards serve the run with and without the flagged samples.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from pydantic import Field, model_validator

from mmcl.config import Section
from mmcl.errors import UserError

FLAGGED = "flagged by audit (data.drop_flagged)"


class DropFlaggedConfig(Section):
    """Which samples of a score table are left out of training: those scored above a threshold, or the top share."""

    scores: str = Field(description="Parquet table with a `key` column (and optionally `shard`, the tar's file "
                                    "name, for keys repeated across shards) and one column per score, higher "
                                    "meaning more suspicious, as `mmcl audit` writes.")
    score: str = Field(description="The column to rank by, e.g. knn_image.")
    threshold: float | None = Field(None, description="Drop samples whose score is above this.")
    fraction: float | None = Field(None, gt=0, lt=1, description="Drop the top-scored ceil(fraction x rows) samples "
                                                                 "instead (ties broken by table order).")

    @model_validator(mode="after")
    def _one_rule(self) -> "DropFlaggedConfig":
        if (self.threshold is None) == (self.fraction is None):
            raise ValueError("data.drop_flagged: give exactly one of threshold and fraction")
        return self


class FlaggedKeys:
    """The keys to pass over, as (shard file name, key), or (None, key) from a table without a shard column."""

    def __init__(self, pairs: set[tuple[str | None, str]]):
        self.pairs = frozenset(pairs)
        self.by_shard = any(shard is not None for shard, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __contains__(self, raw: dict) -> bool:
        shard = Path(raw.get("__url__", "")).name if self.by_shard else None
        return (shard, raw.get("__key__")) in self.pairs

    def fingerprint(self) -> str:
        """Identifies the set, so that a run resumed with another one is refused (its data plan would differ)."""
        digest = hashlib.sha256("\n".join(sorted(f"{s}/{k}" for s, k in self.pairs)).encode()).hexdigest()
        return f"{len(self.pairs)}:{digest[:16]}"


def flagged_keys(cfg: DropFlaggedConfig) -> FlaggedKeys:
    """The keys chosen by `cfg`; UserErrors name the file or column that is wrong."""
    import pyarrow.parquet as pq  # here: the config modules stay light to import

    path = Path(cfg.scores)
    if not path.is_file():
        raise UserError(f"data.drop_flagged.scores: {path} not found (write it with `mmcl audit`)")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise UserError(f"data.drop_flagged.scores: {path} is not a readable Parquet file ({err})") from err
    for column in ("key", cfg.score):
        if column not in table.column_names:
            raise UserError(f"data.drop_flagged: {path} has no column {column!r} (columns: "
                            f"{', '.join(table.column_names)})")
    keys = table.column("key").to_pylist()
    shards = table.column("shard").to_pylist() if "shard" in table.column_names else [None] * len(keys)
    values = table.column(cfg.score).to_pylist()
    bad = next((i for i, v in enumerate(values) if v is None or not math.isfinite(v)), None)
    if bad is not None:
        raise UserError(f"data.drop_flagged: {path} row {bad} (key {keys[bad]!r}) has score {cfg.score} = "
                        f"{values[bad]}; every score must be a finite number")
    if cfg.threshold is not None:
        chosen = [i for i, v in enumerate(values) if v > cfg.threshold]
    else:
        count = math.ceil(cfg.fraction * len(values))
        chosen = sorted(range(len(values)), key=lambda i: -values[i])[:count]  # stable: table order breaks ties
    return FlaggedKeys({(shards[i], keys[i]) for i in chosen})
