"""The one exception a per-sample step raises to skip a sample without stopping the run."""


class SampleError(Exception):
    """A sample that cannot be written: ``reason`` is a short stable name counted in the stats."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
