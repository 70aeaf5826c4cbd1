"""SigLIP: pairwise sigmoid loss with a learnable bias, computed in column chunks.

Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023. With s = logit_scale, b = logit_bias and
label y_ij = +1 if j = i else -1::

    L_SigLIP = -1/N Σ_i Σ_j log σ( y_ij (s⟨u_i, v_j⟩ + b) )

Rows are the first modality, columns the second (as in the paper and ``open_clip.loss.SigLipLoss``). The columns
(this rank's and, across ranks, every rank's gathered ones) are processed ``chunk_size`` at a time under activation
checkpointing, so forward and backward hold O(rows × chunk) logits instead of O(rows × N). The gathered-column
scheme makes N processes equal to one process on the concatenated batch (the paper instead passes chunks around a
ring; the result is the same sum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmcl.errors import UserError
from mmcl.losses.registry import LossOptionError, register_loss
from mmcl.losses.rows import PairLoss, select


def _sigmoid_chunk(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, positives: Tensor, start: int) -> Tensor:
    """Σ_ij -log σ(y_ij (s⟨x_i, y_j⟩ + b)) for the columns ``y`` = global columns ``start .. start+len(y)``."""
    logits = scale * x @ y.T + bias
    columns = torch.arange(start, start + y.shape[0], device=x.device)
    sign = (positives[:, None] == columns[None, :]).to(logits.dtype) * 2 - 1
    return -F.logsigmoid(sign * logits).sum()


@register_loss("siglip")
class SigLipLoss(PairLoss):
    """Sigmoid loss of the first modality's rows against the second's columns; ``{"siglip/<a>-<b>": loss}``."""

    name = "siglip"
    # The paper's initialisation (Sec. 3.2, as open_clip's SigLIP configs): t' = log 10, b = -10, so that the
    # N² − N negatives do not dominate the first steps. A model config that leaves them unset starts from these.
    initial_logit_scale = math.log(10)
    initial_logit_bias = -10.0

    def __init__(self, modalities: Sequence[str] = ("image", "text"), chunk_size: int = 2048):
        super().__init__(modalities)
        if chunk_size < 1:
            raise LossOptionError(f"loss 'siglip': chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size

    def term(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any] | None, a: str, b: str) -> Tensor:
        if "logit_bias" not in outputs:
            raise UserError("loss 'siglip' needs outputs['logit_bias']: a model with a learnable logit bias "
                            "(model.logit_bias_init, which training sets to -10 for a siglip term when it is null)")
        rows = select(outputs, batch, (a, b))
        x, columns = rows.local[a], rows.glob[b]
        args = (outputs["logit_scale"], outputs["logit_bias"], rows.positives)
        if columns.shape[0] <= self.chunk_size:
            loss = _sigmoid_chunk(x, columns, *args, 0)
        else:
            # Checkpointing recomputes each chunk's logits in backward instead of keeping them all alive.
            loss = sum(
                checkpoint(_sigmoid_chunk, x, columns[start : start + self.chunk_size], *args, start, use_reentrant=False)
                for start in range(0, columns.shape[0], self.chunk_size)
            )
        return loss * rows.share
