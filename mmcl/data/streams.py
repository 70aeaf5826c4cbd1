"""Raw (undecoded) samples for one loader worker, read from tar shards by webdataset."""

from __future__ import annotations

import random
from typing import Callable, Iterable, Iterator

import torch
import webdataset as wds

from mmcl.data.failures import SampleError
from mmcl.errors import UserError

# Resampling draws shards forever; this many draws in a row without a single sample means the source is unreadable.
MAX_FRUITLESS_DRAWS = 100


def worker_slot() -> tuple[int, int]:
    """(this loader worker's index, number of workers); (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def read_shards(urls: Iterable[str], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """Tar members grouped into raw samples (bytes per extension, plus __key__ and __url__).

    A key met again in the same shard is a duplicate: the later sample is skipped and counted (webdataset itself
    reports only adjacent repeats, as a duplicate member)."""
    seen: set[str] = set()
    url = None
    for raw in wds.tarfile_to_samples(handler=handler)({"url": url} for url in urls):
        if raw.get("__url__") != url:
            url, seen = raw.get("__url__"), set()
        key = raw.get("__key__")
        if key in seen:
            handler(SampleError(key, "duplicate key", f"again in {url}"))
            continue
        seen.add(key)
        yield raw


def resampled(urls: list[str], rng: random.Random, handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """Endless samples from shards drawn uniformly with replacement; an error, not a hang, if none can be read."""
    fruitless = 0

    def draws() -> Iterator[str]:
        nonlocal fruitless
        while fruitless < MAX_FRUITLESS_DRAWS:
            fruitless += 1
            yield rng.choice(urls)
        raise UserError(f"{MAX_FRUITLESS_DRAWS} shards drawn in a row from {urls[0]} ... ({len(urls)} shards) "
                        "gave no readable sample")

    for sample in read_shards(draws(), handler):
        fruitless = 0
        yield sample


def mix(streams: list[Iterator[dict]], weights: list[float], rng: random.Random) -> Iterator[dict]:
    """Each next sample from a stream chosen with probability proportional to its weight.

    webdataset's RandomMix draws from the global `random` module, so its order could not be reproduced.
    """
    while True:
        yield next(rng.choices(streams, weights)[0])
