"""The optim section of a training config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmcl.config import Section


class OptimConfig(Section):
    """Optimiser and learning-rate schedule."""

    lr: float = Field(5e-4, description="Peak learning rate.", gt=0)
    weight_decay: float = Field(0.2, description="AdamW weight decay, on every weight matrix (embeddings included, as "
                                "CLIP and open_clip do); not on norms, biases, other 1-D parameters or the temperature.", ge=0)
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    eps: float = Field(1e-6, description="AdamW epsilon.", gt=0)
    schedule: Literal["cosine", "constant", "constant_cooldown"] = Field(
        "cosine", description="After warmup: cosine decay to zero, constant, or constant then linear cooldown."
    )
    warmup_steps: int = Field(0, description="Linear warmup steps from 0 to lr.", ge=0)
    cooldown_steps: int = Field(0, description="Linear decay steps to zero at the end (constant_cooldown only).", ge=0)
    grad_clip_norm: float | None = Field(None, description="Clip the global gradient norm to this value; null: no clipping.")
    lr_multipliers: dict[str, float] = Field(
        {}, description="Learning-rate multiplier per tower, by modality, and for `temperature` (logit scale and "
        "bias); unlisted: 1. Fine-tuning a pretrained model often trains a pretrained tower slower than a new one, "
        "e.g. {image: 0.1}; 0 keeps a part fixed while it stays in the optimiser.")
    layer_decay: dict[str, float] = Field(
        {}, description="Layer-wise learning-rate decay per tower, by modality (BEiT, ELECTRA): of a tower's G layer "
        "groups (stem first, each block, then the head, as `unlocked_layers` counts them) group g trains at "
        "decay^(G-1-g) times the tower's rate, so the head keeps it and the stem gets the least; unlisted: no decay.")
    fused: bool = Field(
        True, description="PyTorch's fused AdamW kernel, one pass over all parameters (on CPU about 7x faster than "
        "the per-parameter loop, a fifth of a tiny model's step); false: the reference per-parameter implementation."
    )

    @model_validator(mode="after")
    def _rates_in_range(self):
        negative = sorted(k for k, v in self.lr_multipliers.items() if v < 0)
        if negative:
            raise ValueError(f"lr_multipliers {negative}: a multiplier must be 0 or more")
        outside = sorted(k for k, v in self.layer_decay.items() if not 0 < v <= 1)
        if outside:
            raise ValueError(f"layer_decay {outside}: a decay must be in (0, 1]")
        return self

    @model_validator(mode="after")
    def _cooldown_needs_schedule(self):
        if self.cooldown_steps and self.schedule != "constant_cooldown":
            raise ValueError("cooldown_steps is only used with schedule: constant_cooldown")
        return self
