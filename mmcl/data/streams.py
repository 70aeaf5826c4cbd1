"""Raw (undecoded) samples for one loader worker, read from tar shards.

Evaluation reads through webdataset (`read_shards`). Training reads with `read_tar`, which numbers the samples of a
shard by their tar headers, so that a stream can start at any sample of any shard by reading headers alone (their
data is seeked over, never read or decoded); `SlotReader` and `ResampledReader` are training's raw streams, each
with a small JSON-able `position()` to start again from.
"""

from __future__ import annotations

import hashlib
import random
import re
import tarfile
from typing import Callable, Iterable, Iterator

import torch
import webdataset as wds
from webdataset.tariterators import base_plus_ext

from mmcl.data.failures import SampleError
from mmcl.errors import UserError

# Resampling draws shards forever; this many draws in a row without a single sample means the source is unreadable.
MAX_FRUITLESS_DRAWS = 100
# Tar members webdataset leaves out of samples (metadata such as __index__); training's reader does the same.
_META = re.compile(r"__[^/]*__($|/)")

Handler = Callable[[Exception], bool]


def worker_slot() -> tuple[int, int]:
    """(this loader worker's index, number of workers); (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def derive_seed(*parts) -> int:
    """A 63-bit seed determined by `parts` alone (the same in every process and Python version)."""
    digest = hashlib.blake2b(":".join(map(str, ("mmcl", *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def read_shards(urls: Iterable[str], handler: Handler) -> Iterator[dict]:
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


def is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def _open_tar(url: str) -> tuple[tarfile.TarFile, Callable[[], None]]:
    """(tar, close): a local shard opened for random access (skipped members are seeked over), anything else as
    a stream (skipped members are read past)."""
    if is_local(url):
        tar = tarfile.open(url, mode="r:*")
        return tar, tar.close
    stream = wds.gopen(url)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except BaseException:
        stream.close()
        raise
    return tar, lambda: (tar.close(), stream.close())


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """(member, key, extension) for the members webdataset would group into samples, in file order."""
    while (member := tar.next()) is not None:
        tar.members = []  # TarFile keeps every header it has read; a shard can hold millions
        name = member.name
        if not member.isreg() or not name or _META.match(name):
            continue
        key, ext = base_plus_ext(name)
        if key is not None:
            yield member, key, ext.lower()


def read_tar(url: str, handler: Handler, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, dict]]:
    """(ordinal, raw sample) for the samples of one shard numbered `start` up to `stop` (exclusive).

    Samples are consecutive members sharing a key, numbered in file order; those before `start` are known from
    their headers alone (their keys still count for duplicate detection). As with webdataset, a member that cannot
    be read is skipped and counted, a sample none of whose members could be read is not yielded, and a cut or
    corrupt tar ends the shard with one more count. A key met again in the same shard is a duplicate: the later
    sample is skipped and counted.
    """
    try:
        tar, close = _open_tar(url)
    except Exception as exn:  # not a tar, missing, a failed pipe
        handler(exn)
        return
    try:
        seen: set[str] = set()
        ordinal, key, sample, skip = -1, None, None, True
        try:
            for member, member_key, ext in _members(tar):
                if member_key != key:
                    if sample is not None:
                        yield ordinal, sample
                    ordinal, key, sample = ordinal + 1, member_key, None
                    if stop is not None and ordinal >= stop:
                        return
                    skip = ordinal < start or key in seen
                    if key in seen and ordinal >= start:
                        handler(SampleError(key, "duplicate key", f"again in {url}"))
                    seen.add(key)
                if skip:
                    continue
                try:
                    data = tar.extractfile(member).read()
                except Exception as exn:
                    handler(exn)
                    continue
                if sample is None:
                    sample = {"__key__": key, "__url__": url}
                if ext in sample:
                    handler(ValueError(f"{member.name}: duplicate file name in tar file {url}"))
                    continue
                sample[ext] = data
        except Exception as exn:  # a cut or corrupt tar: the rest of the shard is lost
            handler(exn)
        if sample is not None:
            yield ordinal, sample
    finally:
        close()


def count_samples(url: str) -> int:
    """Samples in a shard as `read_tar` numbers them, from tar headers alone; those before a cut, if cut."""
    count, key = 0, None
    try:
        tar, close = _open_tar(url)
    except Exception:
        return 0
    try:
        for _, member_key, _ in _members(tar):
            if member_key != key:
                count, key = count + 1, member_key
    except Exception:  # unreadable: its samples (if any) are found and counted when a worker reads it
        pass
    finally:
        close()
    return count


class SlotReader:
    """One loader worker's slot of an exact epoch: segments (url, first sample, end or None for the shard's end)
    read in order. Position: [segment index, next sample's ordinal in that segment's shard]."""

    def __init__(self, segments: list[tuple[str, int, int | None]], handler: Handler,
                 position: list[int] | None = None):
        self.segments, self.handler = segments, handler
        self.segment, self.ordinal = position if position is not None else (0, segments[0][1] if segments else 0)

    def position(self) -> list[int]:
        return [self.segment, self.ordinal]

    def __iter__(self) -> Iterator[dict]:
        while self.segment < len(self.segments):
            url, _, stop = self.segments[self.segment]
            for ordinal, raw in read_tar(url, self.handler, start=self.ordinal, stop=stop):
                self.ordinal = ordinal + 1
                yield raw
            self.segment += 1
            if self.segment < len(self.segments):
                self.ordinal = self.segments[self.segment][1]


class ResampledReader:
    """Endless samples: each next one from a source chosen by weight, each source drawing shards uniformly with
    replacement. Every choice is seeded by its own index, so the position is just counts:
    {"mixed": samples so far, "draws": [[shard draws so far, next sample's ordinal in the current one], ...]}."""

    def __init__(self, sources: list[list[str]], weights: list[float], ids: tuple, handler: Handler,
                 position: dict | None = None):
        self.sources, self.weights, self.ids, self.handler = sources, weights, ids, handler
        position = position or {"mixed": 0, "draws": [[0, 0] for _ in sources]}
        self.mixed = position["mixed"]
        self.draws = [list(d) for d in position["draws"]]
        self._streams = [self._source(i) for i in range(len(sources))]

    def position(self) -> dict:
        return {"mixed": self.mixed, "draws": [list(d) for d in self.draws]}

    def _source(self, i: int) -> Iterator[dict]:
        urls, state, fruitless = self.sources[i], self.draws[i], 0
        while fruitless < MAX_FRUITLESS_DRAWS:
            url = random.Random(derive_seed("resample", *self.ids, i, state[0])).choice(urls)
            fruitless += 1
            for ordinal, raw in read_tar(url, self.handler, start=state[1]):
                fruitless = 0
                state[1] = ordinal + 1
                yield raw
            state[0], state[1] = state[0] + 1, 0
        raise UserError(f"{MAX_FRUITLESS_DRAWS} shards drawn in a row from {urls[0]} ... ({len(urls)} shards) "
                        "gave no readable sample")

    def __iter__(self) -> Iterator[dict]:
        choices = range(len(self.sources))
        while True:
            i = random.Random(derive_seed("mix", *self.ids, self.mixed)).choices(choices, self.weights)[0]
            raw = next(self._streams[i])
            self.mixed += 1
            yield raw


class BlockShuffle:
    """Raw samples shuffled within consecutive blocks of `size` (each block by its own seed), so that the stream can
    restart at any item from the reader position where its block began, without reading earlier blocks.

    `emitted`: items already emitted by an earlier run of the same stream; the reader must stand where the block
    holding the next item began (`position_at` said where). The reader's failures are muted while a partly emitted
    block is read again (they were counted the first time).
    """

    def __init__(self, reader, size: int, ids: tuple, mute: Callable[[bool], None], emitted: int = 0):
        self.reader, self.size, self.ids, self.mute = reader, size, ids, mute
        self.emitted = emitted
        self._block = emitted // size
        self._block_start = reader.position()
        self._next_start = self._block_start

    def position_at(self, emitted: int):
        """Reader position where the block holding item `emitted` begins (`emitted` in or right after the
        current block)."""
        return self._block_start if emitted // self.size == self._block else self._next_start

    def __iter__(self) -> Iterator[dict]:
        skip = self.emitted % self.size
        source = iter(self.reader)
        while True:
            self.mute(skip > 0)
            self._block_start = self.reader.position()
            block = [raw for _, raw in zip(range(self.size), source)]
            self.mute(False)
            self._next_start = self.reader.position()
            if not block:
                return
            random.Random(derive_seed("shuffle", *self.ids, self._block)).shuffle(block)
            for raw in block[skip:]:
                self.emitted += 1
                yield raw
            if len(block) < self.size:
                return
            skip, self._block = 0, self._block + 1

