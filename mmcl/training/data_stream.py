"""Endless batches, epoch after epoch, with a position that a resumed run can seek back to.

Each epoch's loader is deterministic given (seed, epoch, rank): its shard order and shuffle are seeded, and the
torch RNG that seeds its worker processes is forked from a fixed seed when the epoch starts. Seeking therefore
rebuilds the epoch's loader and replays (decodes and drops) the batches already consumed.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from mmcl.errors import UserError


class DataStream:
    def __init__(self, make_loader: Callable[[int], Iterator[dict]], seed: int, rank: int):
        self.make_loader = make_loader
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.batches_in_epoch = 0
        self._iterator: Iterator[dict] | None = None

    def _start_epoch(self, epoch: int) -> None:
        self.epoch, self.batches_in_epoch = epoch, 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + self.rank)
            self._iterator = iter(self.make_loader(epoch))

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            self._start_epoch(self.epoch)
        try:
            batch = next(self._iterator)
        except StopIteration:
            if self.batches_in_epoch == 0:
                raise UserError(f"epoch {self.epoch} on rank {self.rank} produced no full batch; "
                                "add data or lower data.batch_size") from None
            self._start_epoch(self.epoch + 1)
            return next(self)
        self.batches_in_epoch += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        """Continue right after the batch the saved stream returned last."""
        self._start_epoch(state["epoch"])
        for _ in range(state["batches_in_epoch"]):
            next(self._iterator)
        self.batches_in_epoch = state["batches_in_epoch"]
