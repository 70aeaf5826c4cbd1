"""The tower contract and the registry mapping a config's `type` to its builder."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

_BUILDERS: dict[str, Callable] = {}


def register_tower(kind: str):
    """Register `fn(tower_cfg, embed_dim) -> Tower` under `kind` (the config's `type`)."""

    def wrap(fn: Callable) -> Callable:
        _BUILDERS[kind] = fn
        return fn

    return wrap


def build_tower(tower_cfg, embed_dim: int) -> "Tower":
    return _BUILDERS[tower_cfg.type](tower_cfg, embed_dim)


def prefixed_matcher(matcher: dict, prefix: str) -> dict:
    """A timm group matcher written for a submodule, re-anchored under `prefix` (a regex such as r'encoder\\.')."""

    def anchor(regex: str) -> str:
        return f"^{prefix}(?:{regex.removeprefix('^')})"

    return {
        group: anchor(spec) if isinstance(spec, str) else [(anchor(r), suffix) for r, suffix in spec]
        for group, spec in matcher.items()
        if spec is not None
    }


class Tower(nn.Module):
    """Encoder ▶ projection: maps one modality's batch tensor to unnormalised [B, embed_dim] features.

    `group_matcher` (timm's format, over this module's parameter names) orders parameters into layer groups
    from stem to head for locking; unmatched parameters (final norms, projections) form the last group.
    `train_transform` / `eval_transform` map one decoded sample (a PIL image, a waveform, ...) to the tensor
    the encoder expects; `tokenizer` is set on text towers and maps a list of strings to token ids.
    `input_shape` is one sample's shape, for example inputs of non-text towers. `weights_root` names the
    submodule whose state dict a weights file holds (a timm or transformers model inside a wrapper).
    """

    def __init__(self, encoder: nn.Module, proj: nn.Module | None = None, *, group_matcher: dict,
                 train_transform=None, eval_transform=None, tokenizer=None, input_shape: tuple[int, ...] = (),
                 weights_root: str = "encoder"):
        super().__init__()
        self.encoder = encoder
        self.proj = proj if proj is not None else nn.Identity()
        self.group_matcher = group_matcher
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.tokenizer = tokenizer
        self.input_shape = input_shape
        self.weights_root = weights_root

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.proj(self.encoder(inputs))

    def trim_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The batch with what cannot change the output cut away (trailing padding, for text towers); called
        outside `forward` so that a compiled tower sees plain shapes, never a data-dependent cut."""
        return inputs

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A batch this tower accepts: tokenised captions for text towers, random values otherwise."""
        if self.tokenizer is not None:
            return self.tokenizer([f"a photo of {i} red circles" for i in range(batch_size)])
        return torch.randn(batch_size, *self.input_shape)
