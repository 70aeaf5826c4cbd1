"""Patch dropout (FLIP, Li et al., CVPR 2023): vision transformers that see a random subset of their patch tokens
while training, and the unmasked phase that ends a run without it.

The dropping itself is open_clip's and timm's own module (`PatchDropout`, active only in training mode, a no-op
at rate 0); this module finds those modules in a built model and sets their rate.
"""

from __future__ import annotations

import logging

from open_clip.transformer import PatchDropout as OpenClipPatchDropout
from timm.layers import PatchDropout as TimmPatchDropout
from torch import nn

from mmcl.errors import UserError

log = logging.getLogger("mmcl.train")

PATCH_DROPOUT_MODULES = (OpenClipPatchDropout, TimmPatchDropout)


def no_patches(what: str, rate: float) -> UserError:
    return UserError(f"patch_dropout={rate} needs a vision transformer (patch tokens to drop), but {what} has none; "
                     "set patch_dropout: 0 for this tower")


def require_patch_dropout(encoder: nn.Module, rate: float, what: str) -> None:
    """Builders can ignore a rate they cannot apply (open_clip's ModifiedResNet does), so the built encoder must
    hold a module that drops patches."""
    if rate and not any(isinstance(m, PATCH_DROPOUT_MODULES) for m in encoder.modules()):
        raise no_patches(what, rate)


class PatchDropoutSchedule:
    """Each tower's configured rate until the last `unmasked_steps` of `steps`, then 0 (FLIP's unmasked tuning,
    open_clip's --force-patch-dropout 0). `apply(step)` depends on the step alone, so a run resumed inside the
    unmasked phase trains without patch dropout, as the uninterrupted run does."""

    def __init__(self, model: nn.Module, steps: int, unmasked_steps: int):
        # The rates as built, read once: apply() overwrites them.
        self.rates = [(m, m.prob) for m in model.modules() if isinstance(m, PATCH_DROPOUT_MODULES)]
        self.unmasked_from, self.unmasked_steps = steps - unmasked_steps, unmasked_steps

    def apply(self, step: int) -> None:
        """Set the rates for training step `step` (0-based: the step about to run)."""
        unmasked = step >= self.unmasked_from
        if step == self.unmasked_from and self.unmasked_steps:
            log.info("step %d: patch dropout off for the last %d steps", step + 1, self.unmasked_steps)
        for module, rate in self.rates:
            module.prob = 0.0 if unmasked else rate
