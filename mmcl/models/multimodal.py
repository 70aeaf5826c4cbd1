"""The multimodal model: one tower per modality into a shared, L2-normalised embedding space."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.data.views import view_key
from mmcl.models.towers import Tower


class MultimodalModel(nn.Module):
    """Maps a batch dict to `{modality: [B, D] unit-norm embedding, "logit_scale": scalar[, "logit_bias"]}`.

    Only modalities that have both a tower and an entry in the batch are encoded, so one model serves
    image-text, audio-text or three-modality batches alike. A second view ``batch["<m>_view"]`` (in-modal losses)
    is encoded by m's tower into ``"<m>_view"``.

    Missing inputs (``batch["<m>_mask"]`` false): for a modality in ``learned_missing`` the row's embedding is a
    learned vector (one per modality, normalised like any embedding) and the output holds ``"<m>_stand_in"``, a
    bool [B] true on those rows, so that losses keep them (:mod:`mmcl.losses.rows`). This is Symile-M3's handling
    (Saporta et al. 2024, experiments with missing data): there a missing image or audio clip becomes the training-set mean input and a
    missing caption a learned ``[MISSING]`` token, with a missingness indicator fed to the encoder, so every missing
    input of a modality maps to one point the training learns; here that point is learned directly, which saves
    encoding placeholders and reaches every point the encoder route could. Other modalities' missing rows keep
    their placeholder embedding and the losses leave those rows out.
    """

    def __init__(
        self,
        towers: dict[str, Tower],
        logit_scale_init: float,
        logit_scale_max: float,
        logit_bias_init: float | None = None,
        learned_missing: Sequence[str] = (),
        embed_dim: int | None = None,
    ):
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        unknown = sorted(set(learned_missing) - set(towers))
        if unknown:
            raise ValueError(f"learned_missing names modalities without a tower: {unknown}")
        if learned_missing and embed_dim is None:
            raise ValueError("learned_missing needs embed_dim")
        # On the model, not in the tower: locking a tower (LiT) must leave its stand-in trainable. Unit-scale
        # random start: a zero vector has no direction to normalise.
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim)) for m in learned_missing})
        # Shape [1], not a 0-dim scalar: FSDP can shard only parameters with a dimension.
        self.logit_scale = nn.Parameter(torch.tensor([float(logit_scale_init)]))
        self.log_scale_max = math.log(logit_scale_max)
        self.logit_bias = nn.Parameter(torch.tensor([float(logit_bias_init)])) if logit_bias_init is not None else None

    @property
    def modalities(self) -> list[str]:
        return list(self.towers)

    def encode(self, modality: str, inputs: torch.Tensor, absent: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-norm embeddings of `inputs`; rows flagged in `absent` get the modality's learned stand-in."""
        tower = self.towers[modality]
        features = tower(tower.trim_inputs(inputs))
        if absent is not None:
            # where(), not indexing: the tower's gradient on absent rows is exactly zero, shapes stay static.
            features = torch.where(absent[:, None], self.missing[modality].to(features.dtype), features)
        return F.normalize(features, dim=-1)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.towers:
            if m not in batch:
                continue
            present = batch.get(f"{m}_mask")
            absent = None
            if m in self.missing and present is not None:
                absent = out[f"{m}_stand_in"] = ~present.to(device=batch[m].device, dtype=torch.bool)
            out[m] = self.encode(m, batch[m], absent)
            if view_key(m) in batch:  # a second augmented view (mmcl.data.views), through the same tower
                out[view_key(m)] = self.encode(m, batch[view_key(m)])
        # Clamping the log keeps exp() from overflowing; the gradient stops at the bound, as in CLIP.
        # New tensors, not views of the parameters: FSDP hooks the outputs and warns about views.
        out["logit_scale"] = self.logit_scale[0].clamp(max=self.log_scale_max).exp()
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias[0].clone()
        return out
