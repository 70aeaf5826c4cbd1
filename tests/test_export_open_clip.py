"""`mmcl export --format open_clip`: open_clip loads the folder strictly and computes mmcl's embeddings."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from mmcl.models import create_model, save_model
from pipelines.cli import main as mmcl


def trained_like(name: str, **config_changes):
    """A built-in model with every weight moved off its initial value, so a dropped or misnamed weight shows."""
    from mmcl.models.factory import resolve_model_config

    cfg = resolve_model_config(name).model_copy(update=config_changes)
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return model.eval(), transforms, tokenizer


def photo() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)  # not square: resize and crop
    return Image.fromarray(pixels)


@pytest.mark.parametrize("bias", [None, -10.0])
def test_open_clip_loads_the_export_and_computes_the_same_embeddings(tmp_path, bias):
    model, transforms, tokenizer = trained_like("tiny", logit_bias_init=bias)
    save_model(model, tmp_path / "checkpoint")
    assert mmcl(["export", str(tmp_path / "checkpoint"), "--format", "open_clip", "--output",
                 str(tmp_path / "exported")]) == 0

    # strict loading: create_model_and_transforms fails on any missing or unexpected weight
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'exported'}")
    clip.eval()
    open_clip_tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'exported'}")
    captions = ["a photo of a red circle", "two blue squares on a long grey table at noon"]

    image_in = transforms.eval["image"](photo())[None]
    assert torch.equal(preprocess(photo())[None], image_in)  # size, crop, interpolation, mean and std
    assert torch.equal(open_clip_tokenizer(captions), tokenizer(captions))  # vocabulary and context length
    with torch.no_grad():
        ours = {"image": model.encode("image", image_in), "text": model.encode("text", tokenizer(captions))}
        theirs = {"image": clip.encode_image(image_in, normalize=True),
                  "text": clip.encode_text(open_clip_tokenizer(captions), normalize=True)}
    for modality in ours:
        torch.testing.assert_close(theirs[modality], ours[modality], rtol=0, atol=1e-6)
    assert clip.logit_scale.exp().item() == pytest.approx(model(
        {"image": image_in, "text": tokenizer(captions[:1])})["logit_scale"].item(), abs=1e-6)
    if bias is None:
        assert clip.logit_bias is None
    else:
        assert clip.logit_bias.item() == pytest.approx(model.logit_bias.item(), abs=1e-7)


def test_the_config_records_the_evaluation_preprocessing(tmp_path):
    model, _, _ = trained_like("tiny")
    save_model(model, tmp_path / "checkpoint")
    mmcl(["export", str(tmp_path / "checkpoint"), "--format", "open_clip", "--output", str(tmp_path / "out")])
    config = json.loads((tmp_path / "out" / "open_clip_config.json").read_text())
    assert config["preprocess_cfg"]["size"] == model.config.towers["image"].image_size
    assert config["preprocess_cfg"]["interpolation"] == "bicubic"
    assert config["model_cfg"]["text_cfg"]["context_length"] == model.config.towers["text"].context_length


def test_towers_open_clip_cannot_hold_are_refused_with_the_reason(tmp_path, capsys):
    model, _, _ = trained_like("tiny-audio")
    save_model(model, tmp_path / "checkpoint")
    assert mmcl(["export", str(tmp_path / "checkpoint"), "--format", "open_clip", "--output",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot export towers" in err and "open_clip_vision" in err and "audio" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_is_named(tmp_path, capsys):
    assert mmcl(["export", str(tmp_path / "nowhere"), "--format", "open_clip", "--output", str(tmp_path / "o")]) == 2
    assert "nowhere: no such checkpoint or run folder" in capsys.readouterr().err
