"""Tower builders: one constructor per tower kind, registered by the config's `type` field."""

from __future__ import annotations

from typing import Callable

from open_clip.model import CLIPTextCfg, CLIPVisionCfg, _build_text_tower, _build_vision_tower
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transform import image_transform
from torch import nn

from mmcl.models.config import OpenClipTextTowerConfig, OpenClipVisionTowerConfig

_BUILDERS: dict[str, Callable] = {}


def register_tower(kind: str):
    """Register `fn(tower_cfg, embed_dim) -> Tower` under `kind` (the config's `type`)."""

    def wrap(fn: Callable) -> Callable:
        _BUILDERS[kind] = fn
        return fn

    return wrap


class Tower(nn.Module):
    """An encoder mapping one modality's batch tensor to unnormalised [B, embed_dim] features.

    `train_transform` / `eval_transform` map one decoded sample (a PIL image, a waveform, ...) to the tensor
    the encoder expects; `tokenizer` is set on text towers and maps a list of strings to token ids.
    """

    def __init__(self, encoder: nn.Module, train_transform=None, eval_transform=None, tokenizer=None):
        super().__init__()
        self.encoder = encoder
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.tokenizer = tokenizer

    def forward(self, inputs):
        return self.encoder(inputs)


def build_tower(tower_cfg, embed_dim: int) -> Tower:
    return _BUILDERS[tower_cfg.type](tower_cfg, embed_dim)


@register_tower("open_clip_vision")
def _open_clip_vision(cfg: OpenClipVisionTowerConfig, embed_dim: int) -> Tower:
    encoder = _build_vision_tower(embed_dim, CLIPVisionCfg(**cfg.cfg), quick_gelu=cfg.quick_gelu)
    return Tower(
        encoder,
        train_transform=image_transform(cfg.image_size, is_train=True, mean=cfg.mean, std=cfg.std),
        eval_transform=image_transform(cfg.image_size, is_train=False, mean=cfg.mean, std=cfg.std),
    )


@register_tower("open_clip_text")
def _open_clip_text(cfg: OpenClipTextTowerConfig, embed_dim: int) -> Tower:
    encoder = _build_text_tower(embed_dim, CLIPTextCfg(**cfg.cfg), quick_gelu=cfg.quick_gelu)
    return Tower(encoder, tokenizer=SimpleTokenizer(context_length=cfg.context_length))
