"""Split the ordered specs into shards, and the shards into parts, the same way on every run.

Shard boundaries depend only on the listing (sample count, and source-file bytes when a byte
limit is set), never on what succeeds, so a resumed run or K independent ``--part`` jobs
produce exactly the shards one uninterrupted run would.
"""

from __future__ import annotations

import os

from data_tools.errors import SampleError
from data_tools.sample import content_hash
from data_tools.spec import SampleSpec
from mmcl.errors import UserError

# Without --shard-size: enough shards for several processes x loader workers to each read their own (a loader refuses
# fewer shards than it has readers), but no shard so small that files outnumber samples, and at most what
# img2dataset and open_clip's tooling use for large sets.
AUTO_SHARDS = 16
AUTO_MIN_SIZE = 16
AUTO_MAX_SIZE = 10_000


def auto_shard_size(n_samples: int) -> tuple[int, str]:
    """The shard size for ``n_samples`` listed samples, and one line saying why; a function of the count alone, so
    a rerun or another --part of the same input chooses the same."""
    size = min(AUTO_MAX_SIZE, max(AUTO_MIN_SIZE, -(-n_samples // AUTO_SHARDS)))
    n_shards = -(-n_samples // size)
    return size, (f"shard size {size} for {n_samples} samples ({n_shards} shard(s)): the default aims at "
                  f"{AUTO_SHARDS} shards of {AUTO_MIN_SIZE} to {AUTO_MAX_SIZE} samples; --shard-size overrides it")


def _source_bytes(spec: SampleSpec) -> int:
    total = 0
    for path in spec.paths():
        try:
            total += os.stat(path).st_size
        except OSError:
            pass  # reported as a failure when the shard is written
    return total


def shard_ranges(specs: list[SampleSpec], max_count: int, max_bytes: int | None = None) -> list[tuple[int, int]]:
    """[start, end) index ranges: a shard closes at max_count samples or once its sources reach max_bytes."""
    if max_count <= 0:
        raise UserError(f"--shard-size {max_count}: must be a positive number of samples")
    if max_bytes is not None and max_bytes <= 0:
        raise UserError(f"--shard-bytes {max_bytes}: must be positive")
    ranges, start, size = [], 0, 0
    for i, spec in enumerate(specs):
        size += _source_bytes(spec) if max_bytes else 0
        if i + 1 - start >= max_count or (max_bytes and size >= max_bytes):
            ranges.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(specs):
        ranges.append((start, len(specs)))
    return ranges


def part_shards(n_shards: int, num_parts: int, part: int) -> range:
    """Contiguous, disjoint shard indices for part ``part`` of ``num_parts``."""
    if num_parts < 1 or not 0 <= part < num_parts:
        raise UserError(f"--part {part} --num-parts {num_parts}: need num-parts >= 1 and 0 <= part < num-parts")
    return range(n_shards * part // num_parts, n_shards * (part + 1) // num_parts)


def mark_content_duplicates(specs: list[SampleSpec]) -> None:
    """Hash every sample's sources; a sample whose content was already seen becomes a failure."""
    first: dict[str, str] = {}
    for spec in specs:
        if spec.error is not None:
            continue
        try:
            digest = content_hash(spec)
        except SampleError:
            continue  # an unreadable file is reported by the shard writer
        if digest in first:
            spec.error = ("duplicate_content", f"{spec.source}: same content as {first[digest]}")
        else:
            first[digest] = spec.source
