"""Typed model configs: one tower config per modality, plus the shared embedding space."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Literal, Union

from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from pydantic import Field, field_validator

from mmcl.config import Section

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_keys(cfg: dict[str, Any], dataclass_type: type, what: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(dataclass_type)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; known keys: {sorted(known)}")
    return cfg


class OpenClipVisionTowerConfig(Section):
    """An open_clip vision tower (ViT, ModifiedResNet or timm trunk) built from open_clip's `vision_cfg`."""

    type: Literal["open_clip_vision"] = Field(description="Tower kind: an open_clip vision tower.")
    cfg: dict[str, Any] = Field(
        description="open_clip `vision_cfg` fields (CLIPVisionCfg), exactly as in open_clip's model JSON files."
    )
    quick_gelu: bool = Field(False, description="Use QuickGELU activations (OpenAI-trained weights need it).")
    mean: tuple[float, float, float] = Field(OPENAI_MEAN, description="Per-channel normalisation mean.")
    std: tuple[float, float, float] = Field(OPENAI_STD, description="Per-channel normalisation std.")

    @field_validator("cfg")
    @classmethod
    def _known_keys(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(cfg, CLIPVisionCfg, "open_clip vision_cfg")

    @property
    def image_size(self) -> int:
        size = self.cfg.get("image_size", CLIPVisionCfg.image_size)
        return size if isinstance(size, int) else size[0]


class OpenClipTextTowerConfig(Section):
    """An open_clip text transformer built from open_clip's `text_cfg`, with its BPE tokenizer."""

    type: Literal["open_clip_text"] = Field(description="Tower kind: an open_clip text transformer.")
    cfg: dict[str, Any] = Field(
        description="open_clip `text_cfg` fields (CLIPTextCfg), exactly as in open_clip's model JSON files."
    )
    quick_gelu: bool = Field(False, description="Use QuickGELU activations (OpenAI-trained weights need it).")

    @field_validator("cfg")
    @classmethod
    def _known_keys(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return _check_keys(cfg, CLIPTextCfg, "open_clip text_cfg")

    @property
    def context_length(self) -> int:
        return self.cfg.get("context_length", CLIPTextCfg.context_length)


TowerConfig = Annotated[
    Union[OpenClipVisionTowerConfig, OpenClipTextTowerConfig],
    Field(discriminator="type"),
]


class ModelConfig(Section):
    """A multimodal model: one tower per modality, each projecting into a shared embed_dim space."""

    embed_dim: int = Field(description="Width of the shared, L2-normalised embedding space.", gt=0)
    towers: dict[str, TowerConfig] = Field(
        description="One tower per modality, keyed by modality name (image, text, audio, ...)."
    )
    logit_scale_init: float = Field(
        math.log(1 / 0.07), description="Initial log of the temperature multiplier (CLIP: ln(1/0.07))."
    )
    logit_scale_max: float = Field(100.0, description="Upper clamp of the exponentiated temperature multiplier.", gt=0)
    logit_bias_init: float | None = Field(
        None, description="Initial logit bias for sigmoid losses (SigLIP: -10); null means no bias parameter."
    )

    @field_validator("towers")
    @classmethod
    def _at_least_one(cls, towers: dict[str, Any]) -> dict[str, Any]:
        if not towers:
            raise ValueError("a model needs at least one tower")
        return towers
