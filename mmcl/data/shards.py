"""Which shards a process reads: URL specs expanded, per-epoch order shared by all ranks, the rank's slice."""

from __future__ import annotations

import glob
import os
import random
import re

import braceexpand

from mmcl.errors import UserError


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


def shards_for_rank(urls: list[str], *, epoch: int, seed: int, rank: int, world_size: int,
                    num_workers: int) -> list[str]:
    """This rank's shards for one exact epoch: one epoch-seeded order shared by all ranks, every world_size-th."""
    needed = world_size * max(1, num_workers)
    if len(urls) < needed:
        raise UserError(
            f"{len(urls)} shard(s) cannot feed {world_size} process(es) x {max(1, num_workers)} loader worker(s): "
            f"need at least {needed}; write more, smaller shards or lower data.num_workers"
        )
    order = list(urls)
    seeded_rng("shards", seed, epoch).shuffle(order)
    return order[rank::world_size]
