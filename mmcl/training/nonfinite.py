"""The non-finite guard: a NaN/inf loss never reaches the weights, and every process takes the same decision.

Under `skip` a process that decided alone would step while another skipped, and the next collective would hang;
so the verdict is agreed across processes (any non-finite loss anywhere skips the step everywhere), and that one
verdict drives both the optimiser step and the count of skipped steps in a row.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger("mmcl.train")


class NonFiniteGuard:
    """`check` before any backward (the loss of the whole step), `step_ok` for the optimiser, `after_step` after it.

    `all_finite(local: bool) -> bool` agrees a verdict across processes (identity for one process).
    """

    def __init__(self, policy: str, max_skipped: int, all_finite: Callable[[bool], bool] = lambda ok: ok):
        if policy not in ("halt", "skip"):
            raise ValueError(f"unknown non-finite policy {policy!r}")
        self.policy = policy
        self.max_skipped = max_skipped
        self.all_finite = all_finite
        self.step_ok = True
        self.skipped_in_a_row = 0

    def check(self, step: int, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> bool:
        """The agreed verdict on this step's loss: False means skip (halt raises instead)."""
        self.step_ok = self.all_finite(bool(torch.isfinite(total.detach()).item()))
        if self.step_ok:
            return True
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach())]
        message = f"step {step}: non-finite loss (terms {bad or 'on another process'})"
        if self.policy == "halt":
            raise FloatingPointError(message + "; halting, weights left unchanged (train.on_nonfinite=halt)")
        log.warning("%s; step skipped, weights unchanged", message)
        return False

    def after_step(self) -> None:
        """Count skipped steps in a row from the agreed verdict; halt past `max_skipped`."""
        self.skipped_in_a_row = 0 if self.step_ok else self.skipped_in_a_row + 1
        if self.skipped_in_a_row >= self.max_skipped:
            raise FloatingPointError(f"{self.skipped_in_a_row} non-finite steps in a row (train.max_skipped_steps)")
