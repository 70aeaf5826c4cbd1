"""Counting samples that fail to decode: skipped, named in a rate-limited log, and counted by reason.

Each loader worker holds its own counter; the counts since the last batch ride along in the batch
under `__failures__`, so the training process can sum them across workers and log them.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("mmcl.data")


class SampleError(Exception):
    """A sample that cannot be used; `reason` is a short, stable label used as the counter key."""

    def __init__(self, key: str, reason: str, detail: str = ""):
        super().__init__(f"sample {key!r}: {reason}" + (f" ({detail})" if detail else ""))
        self.key = key
        self.reason = reason


def _reason(exn: Exception) -> str:
    """A counter key for what webdataset raised while reading a tar."""
    if "duplicate file name" in str(exn):  # a key repeated by the next member: the repeat is dropped
        return "duplicate key"
    return f"unreadable: {type(exn).__name__}"


class FailureCounter:
    """Exception handler for webdataset stages that counts and logs instead of raising.

    The log names each of the first `log_first` failures per reason, then only the running count at every
    power of ten, so a badly broken shard set cannot flood it.
    """

    def __init__(self, log_first: int = 10):
        self.log_first = log_first
        self.total: Counter[str] = Counter()
        self.unreported: Counter[str] = Counter()

    def __call__(self, exn: Exception) -> bool:
        reason = exn.reason if isinstance(exn, SampleError) else _reason(exn)
        self.count(reason)
        count = self.total[reason]
        if count <= self.log_first:
            log.warning("skipped %s", exn)
            if count == self.log_first:
                log.warning("further %r failures are counted; the count is logged at every power of ten", reason)
        elif str(count).rstrip("0") == "1":
            log.warning("%d samples skipped in this worker so far: %s", count, reason)
        return True  # keep streaming

    def count(self, reason: str) -> None:
        """Count a skip without logging it: for expected ones (an evaluation item lacking a modality its task
        needs, which the task reports in one line with the count)."""
        self.total[reason] += 1
        self.unreported[reason] += 1

    def take(self) -> dict[str, int]:
        """Counts since the last call."""
        taken = dict(self.unreported)
        self.unreported.clear()
        return taken
