"""Endless batches, epoch after epoch, with a position that a resumed run can seek back to.

Each epoch's loader is deterministic given (seed, epoch, rank): its shard order and shuffle are seeded, every sample
is augmented with its own seed, and the torch RNG is forked around building it. A loader that can report its
position (`position()` / `seek()`, as `mmcl.data.build_loader`'s training loader does) is saved per loader worker
and resumed by seeking: nothing already consumed is decoded again, so resuming late in an epoch costs what resuming
early does. Any other iterable is resumed by replaying (decoding and dropping) the batches already consumed.

With several processes, `agree` ("does every process have a batch?", e.g. an all-reduce) keeps them in step: when
any process's epoch ends, all start the next one together, and the batches a process had left are dropped, counted
under "dropped to balance ranks" and logged once per epoch.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterator

import torch

from mmcl.errors import UserError

log = logging.getLogger("mmcl.data")

DROPPED = "dropped to balance ranks"


class DataStream:
    def __init__(self, make_loader: Callable[[int], Iterator[dict]], seed: int, rank: int,
                 agree: Callable[[bool], bool] | None = None):
        self.make_loader = make_loader
        self.seed = seed
        self.rank = rank
        self.agree = agree
        self.epoch = 0
        self.batches_in_epoch = 0
        self._loader = None
        self._iterator: Iterator[dict] | None = None
        self._pending: Counter[str] = Counter()  # counts from an epoch cut short, reported with the next batch

    def _start_epoch(self, epoch: int, position: dict | None = None) -> bool:
        """Build the epoch's loader, sought to `position` where given and the loader can seek (returns whether)."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()  # stops the previous epoch's loader workers
        self.epoch, self.batches_in_epoch = epoch, 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + self.rank)
            self._loader = self.make_loader(epoch)
            sought = position is not None and self._seekable()
            if sought:
                self._loader.seek(position)
            self._iterator = iter(self._loader)
        return sought

    def _seekable(self) -> bool:
        return hasattr(self._loader, "position") and hasattr(self._loader, "seek")

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            self._start_epoch(self.epoch)
        while True:
            batch = next(self._iterator, None)
            have = batch is not None
            if (self.agree(have) if self.agree is not None else have):
                break
            if self.batches_in_epoch == 0:
                raise UserError(f"epoch {self.epoch} on rank {self.rank} produced no full batch; "
                                "add data or lower data.batch_size")
            if have:  # another process has run out: this epoch ends here for all
                self._cut_short(batch)
            self._start_epoch(self.epoch + 1)
        self.batches_in_epoch += 1
        if self._pending and isinstance(batch.get("__failures__"), dict):
            batch["__failures__"] = dict(Counter(batch["__failures__"]) + self._pending)
            self._pending = Counter()
        return batch

    def _cut_short(self, batch: dict) -> None:
        planned = getattr(self._loader, "batches_per_epoch", None)
        left = f"{planned - self.batches_in_epoch} batch(es)" if planned is not None else "its remaining batches"
        unused = getattr(self._loader, "unused_samples", None)
        # The batch in hand is dropped too (the loader already counts it as returned); its failure counts stand.
        dropped = (unused() if unused is not None else 0) + len(batch.get("__key__", ()))
        self._pending.update(batch.get("__failures__", {}))
        self._pending[DROPPED] += dropped
        log.info("epoch %d ended on another process first: rank %d drops %s (%d samples), counted as %r",
                 self.epoch, self.rank, left, dropped, DROPPED)

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}
        if self._seekable():
            state["loader"] = self._loader.position()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue right after the batch the saved stream returned last."""
        self._pending = Counter()
        if not self._start_epoch(state["epoch"], state.get("loader")):  # no position to seek: replay instead
            for _ in range(state["batches_in_epoch"]):
                next(self._iterator)
        self.batches_in_epoch = state["batches_in_epoch"]
