"""The multimodal model: one tower per modality into a shared, L2-normalised embedding space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.models.towers import Tower


class MultimodalModel(nn.Module):
    """Maps a batch dict to `{modality: [B, D] unit-norm embedding, "logit_scale": scalar[, "logit_bias"]}`.

    Only modalities that have both a tower and an entry in the batch are encoded, so one model serves
    image-text, audio-text or three-modality batches alike.
    """

    def __init__(
        self,
        towers: dict[str, Tower],
        logit_scale_init: float,
        logit_scale_max: float,
        logit_bias_init: float | None = None,
    ):
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        # Shape [1], not a 0-dim scalar: FSDP can shard only parameters with a dimension.
        self.logit_scale = nn.Parameter(torch.tensor([float(logit_scale_init)]))
        self.log_scale_max = math.log(logit_scale_max)
        self.logit_bias = nn.Parameter(torch.tensor([float(logit_bias_init)])) if logit_bias_init is not None else None

    @property
    def modalities(self) -> list[str]:
        return list(self.towers)

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        tower = self.towers[modality]
        return F.normalize(tower(tower.trim_inputs(inputs)), dim=-1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {m: self.encode(m, batch[m]) for m in self.towers if m in batch}
        # Clamping the log keeps exp() from overflowing; the gradient stops at the bound, as in CLIP.
        # New tensors, not views of the parameters: FSDP hooks the outputs and warns about views.
        out["logit_scale"] = self.logit_scale[0].clamp(max=self.log_scale_max).exp()
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias[0].clone()
        return out
