"""Which samples a process reads: URL specs expanded, samples per shard, and each exact epoch's plan (one
epoch-seeded shard order shared by all ranks, cut into equal slots per process and loader worker)."""

from __future__ import annotations

import bisect
import glob
import json
import logging
import os
import random
import re
from dataclasses import dataclass

import braceexpand

from mmcl.data.streams import count_samples, is_local
from mmcl.errors import UserError

log = logging.getLogger("mmcl.data")
SIZES = "sizes.json"  # as data_tools/files.py writes it


def _natural_key(path: str) -> list:
    # Evaluation sets often name shards 0.tar ... 10.tar; plain sorting would read 10.tar before 2.tar.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def expand_urls(spec: str | list[str]) -> list[str]:
    """Shard URLs from a directory (its *.tar in natural order), brace patterns, pipe: URLs or a list of these."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in specs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.tar")), key=_natural_key)
            if not found:
                raise UserError(f"{item}: directory holds no .tar shards")
            urls.extend(found)
        else:
            urls.extend(braceexpand.braceexpand(item))
    missing = [u for u in urls if "://" not in u and not u.startswith("pipe:") and not os.path.exists(u)]
    if missing:
        raise UserError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not urls:
        raise UserError(f"no shards in {spec!r}")
    return urls


def seeded_rng(*parts) -> random.Random:
    """An RNG determined by `parts` alone (a string seed is hashed with SHA-512, the same in every process)."""
    return random.Random(":".join(map(str, ("mmcl", *parts))))


def shard_sizes(urls: list[str]) -> list[int]:
    """Samples per shard: from the `sizes.json` beside the shards (shard file
    name -> samples, as `mmcl shards prepare` writes it) where it names them, else counted from tar headers alone
    (no data is read). Known sizes are kept for the life of the process, so later epochs do not count again."""
    sizes, counted = [], 0
    for url in urls:
        key = _size_key(url)
        if key not in _SIZES:
            listed = _sizes_file(url).get(os.path.basename(url)) if is_local(url) else None
            if isinstance(listed, int) and listed >= 0:
                _SIZES[key] = listed
            else:
                _SIZES[key] = count_samples(url)
                counted += 1
        sizes.append(_SIZES[key])
    if counted:
        log.warning("counted the samples of %d shard(s) from their tar headers: no sizes.json beside them names "
                    "them (`mmcl shards stats --write-sizes` writes one)", counted)
    return sizes


_SIZES: dict[tuple, int] = {}


def _size_key(url: str) -> tuple:
    if not is_local(url):
        return (url,)
    stat = os.stat(url)
    return (os.path.abspath(url), stat.st_size, stat.st_mtime_ns)


def _sizes_file(url: str) -> dict:
    path = os.path.join(os.path.dirname(os.path.abspath(url)), SIZES)
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({err}); fix or delete it (the shards are then counted instead)") from err
    if not isinstance(found, dict):
        raise UserError(f"{path}: expected an object mapping shard file name -> sample count")
    return found


Segment = tuple[str, int, "int | None"]  # shard url, first sample, end sample (None: the shard's real end)


@dataclass
class EpochPlan:
    """One exact epoch cut into equal work: the epoch's samples (shards in the epoch-seeded order shared by all
    processes, concatenated) split into `slots` = processes x loader workers contiguous runs as equal as whole
    samples allow; every slot yields `batches` batches at most, the same for all."""

    samples: int
    batch_size: int
    slot_samples: list[int]
    segments: list[list[Segment]]
    batches: int

    @property
    def dropped(self) -> int:
        """Samples left out of the planned batches (more are dropped where failures leave a slot short)."""
        return self.samples - len(self.slot_samples) * self.batches * self.batch_size


def plan_epoch(urls: list[str], sizes: list[int], *, epoch: int, seed: int, slots: int,
               batch_size: int) -> EpochPlan:
    """Which samples each (process, loader worker) slot reads in one exact epoch; slot = rank x workers + worker."""
    order = list(zip(urls, sizes))
    seeded_rng("shards", seed, epoch).shuffle(order)
    total = sum(sizes)
    per_slot, extra = divmod(total, slots)
    bounds = [s * per_slot + min(s, extra) for s in range(slots + 1)]
    segments: list[list[Segment]] = [[] for _ in range(slots)]
    start = 0
    for url, size in order:
        end = start + size
        if size == 0:  # read anyway by the slot at its place: an unreadable shard is still counted as a failure
            segments[min(bisect.bisect_right(bounds, start) - 1, slots - 1)].append((url, 0, None))
            continue
        first = bisect.bisect_right(bounds, start) - 1
        for s in range(first, slots):
            lo, hi = max(start, bounds[s]), min(end, bounds[s + 1])
            if lo >= hi:
                break
            segments[s].append((url, lo - start, None if end <= bounds[s + 1] else hi - start))
        start = end
    slot_samples = [bounds[s + 1] - bounds[s] for s in range(slots)]
    return EpochPlan(total, batch_size, slot_samples, segments, per_slot // batch_size)
