"""Audio towers over the log-mel spectrogram of `mmcl.data.audio`: an AST-style timm ViT, or a small CNN.

Both read [B, 1, n_mels, frames]; the front-end settings live in the tower config so the transforms and the
encoder's input size always agree. Variable-length clips are cropped/padded by the front end.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmcl.data.audio import AudioFrontEndConfig, AudioTransform
from mmcl.models.config import AstAudioTowerConfig, AudioNorm, CnnAudioTowerConfig
from mmcl.models.towers.base import Tower, prefixed_matcher, register_tower
from mmcl.models.towers.image import timm_trunk


class LogMelEncoder(nn.Module):
    """Fixed (AST-style) normalisation of log-mel dB values, then the trunk."""

    def __init__(self, trunk: nn.Module, norm: AudioNorm):
        super().__init__()
        self.trunk = trunk
        self.mean, self.std = norm.mean, norm.std

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.trunk((spec - self.mean) / self.std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)


class ConvStage(nn.Sequential):
    """Two 3x3 conv-BN-ReLU and a 2x2 average pool: one stage of the CNN, named so it can be an FSDP unit."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
        )


class AudioCNN(nn.Module):
    """PANN-style CNN: blocks of two 3x3 conv-BN-ReLU and a 2x2 average pool; then mean over frequency and
    max + mean over time, so a short loud event and a steady sound both register."""

    def __init__(self, channels: list[int]):
        super().__init__()
        blocks, c_in = [], 1
        for c_out in channels:
            blocks.append(ConvStage(c_in, c_out))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.num_features = c_in
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = x.mean(dim=2)
        return x.amax(dim=-1) + x.mean(dim=-1)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


def _audio_tower(trunk: nn.Module, front_end: AudioFrontEndConfig, norm: AudioNorm, embed_dim: int,
                 group_matcher: dict) -> Tower:
    return Tower(
        LogMelEncoder(trunk, norm),
        nn.Linear(trunk.num_features, embed_dim, bias=False),
        group_matcher=group_matcher,
        train_transform=AudioTransform(front_end, train=True),
        eval_transform=AudioTransform(front_end, train=False),
        input_shape=(1, front_end.n_mels, front_end.num_frames),
        weights_root="encoder.trunk",
    )


@register_tower("ast")
def ast(cfg: AstAudioTowerConfig, embed_dim: int) -> Tower:
    fe = cfg.front_end
    trunk = timm_trunk(cfg.model_name, cfg.patch_dropout, in_chans=1, img_size=(fe.n_mels, fe.num_frames),
                       **cfg.kwargs)
    return _audio_tower(trunk, fe, cfg.norm, embed_dim,
                        prefixed_matcher(trunk.group_matcher(), r"encoder\.trunk\."))


@register_tower("audio_cnn")
def audio_cnn(cfg: CnnAudioTowerConfig, embed_dim: int) -> Tower:
    return _audio_tower(AudioCNN(cfg.channels), cfg.front_end, cfg.norm, embed_dim,
                        {"blocks": [(r"^encoder\.trunk\.blocks\.(\d+)", None)]})
