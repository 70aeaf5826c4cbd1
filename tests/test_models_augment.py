"""Training image augmentation from the tower config: grey-scale and colour jitter reach the train transform only."""

from __future__ import annotations

import torch
from PIL import Image

from mmcl.models import create_model
from mmcl.models.factory import resolve_model_config


def tiny_with(augment: dict):
    cfg = resolve_model_config("tiny").model_dump()
    cfg["towers"]["image"]["augment"] = augment
    return create_model(cfg)[1]


def unnormalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]


def test_gray_scale_prob_one_makes_every_training_image_grey():
    cfg = resolve_model_config("tiny").towers["image"]
    transforms = tiny_with({"gray_scale_prob": 1.0})
    red = Image.new("RGB", (80, 80), (220, 30, 30))
    pixels = unnormalise(transforms.train["image"](red), cfg.mean, cfg.std)
    torch.testing.assert_close(pixels[0], pixels[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[1], pixels[2], atol=1e-5, rtol=0)
    evaluated = unnormalise(transforms.eval["image"](red), cfg.mean, cfg.std)
    assert (evaluated[0] - evaluated[1]).abs().mean() > 0.5  # evaluation keeps the colour


def test_colour_jitter_changes_colours_and_default_does_not():
    torch.manual_seed(0)
    flat = Image.new("RGB", (64, 64), (100, 150, 200))
    jittered = tiny_with({"color_jitter": (0.8, 0.8, 0.8, 0.2), "color_jitter_prob": 1.0, "scale": (1.0, 1.0)}).train["image"]
    plain = tiny_with({"scale": (1.0, 1.0)}).train["image"]
    means = {tuple(jittered(flat).mean(dim=(1, 2)).round(decimals=3).tolist()) for _ in range(5)}
    assert len(means) == 5
    assert len({tuple(plain(flat).mean(dim=(1, 2)).round(decimals=3).tolist()) for _ in range(5)}) == 1
