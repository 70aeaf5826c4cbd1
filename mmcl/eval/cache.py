"""Decoded evaluation batches kept between evaluations of one run, within a memory budget."""

from __future__ import annotations

import logging
from typing import Callable, Hashable, Iterable, Iterator

import torch

log = logging.getLogger("mmcl.eval")


def _nbytes(batch: dict) -> int:
    return sum(v.untyped_storage().nbytes() for v in batch.values() if isinstance(v, torch.Tensor))


class DecodedCache:
    """Each source's decoded batches after its first pass, so later evaluations skip decoding, up to `max_bytes`
    in all: a source that does not fit is dropped as soon as it overflows and decoded again at every evaluation,
    so periodic evaluation on a large set costs its decoding time, never the memory of the whole decoded set."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self.kept: dict[Hashable, list[dict]] = {}
        self.too_large: set[Hashable] = set()

    def batches(self, key: Hashable, decode: Callable[[], Iterable[dict]]) -> Iterator[dict]:
        if key in self.kept:
            yield from self.kept[key]
            return
        if key in self.too_large:
            yield from decode()
            return
        kept: list[dict] | None = []
        size = 0
        for batch in decode():
            if kept is not None:
                size += _nbytes(batch)
                if self.used + size > self.max_bytes:
                    log.info("evaluation data %s exceeds the cache budget (%.1f GB); it is decoded at every "
                             "evaluation", key[0] if isinstance(key, tuple) else key, self.max_bytes / 2**30)
                    kept = None
                    self.too_large.add(key)
                else:
                    kept.append(batch)
            yield batch
        if kept is not None:
            self.kept[key] = kept
            self.used += size
