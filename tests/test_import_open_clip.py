"""Model config `open_clip: {name, weights}`: one open_clip checkpoint becomes an mmcl model with both towers,
logit_scale and logit_bias, computing what open_clip computes; `mmcl export` gives the checkpoint back."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

from mmcl.errors import UserError
from mmcl.interop.open_clip_format import WEIGHTS, export_open_clip
from mmcl.models import create_model, load_model, save_model

SMALL = {"embed_dim": 32,
         "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def open_clip_checkpoint(tmp_path, **spec_changes):
    """(config JSON path, checkpoint path, open_clip model) of a small open_clip model with perturbed weights."""
    spec = {**SMALL, **spec_changes}
    config = tmp_path / "small-clip.json"
    config.write_text(json.dumps(spec))
    open_clip.add_model_config(config)
    torch.manual_seed(1)
    model = open_clip.create_model("small-clip").eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
        model.logit_scale.fill_(3.3)
        if model.logit_bias is not None:
            model.logit_bias.fill_(-7.5)
    weights = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return config, weights, model


def embeddings(encode_image, encode_text, size: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, size, size, generator=gen)
    tokens = open_clip.tokenize(["a red circle", "two green squares on a table", "nothing"], context_length=16)
    with torch.no_grad():
        return {"image": encode_image(images), "text": encode_text(tokens)}


@pytest.mark.parametrize("bias", [None, -10.0])
def test_an_imported_checkpoint_computes_open_clips_embeddings_scale_and_bias(tmp_path, bias):
    config, weights, reference = open_clip_checkpoint(tmp_path, **({"init_logit_bias": bias} if bias else {}))
    model, _, _ = create_model({"open_clip": {"name": str(config), "weights": str(weights)}})
    model.eval()
    ours = embeddings(lambda x: model.encode("image", x), lambda t: model.encode("text", t), 64)
    theirs = embeddings(lambda x: reference.encode_image(x, normalize=True),
                        lambda t: reference.encode_text(t, normalize=True), 64)
    for modality in ours:
        torch.testing.assert_close(ours[modality], theirs[modality], rtol=0, atol=1e-6)
    assert model.logit_scale.item() == pytest.approx(3.3)
    if bias is None:
        assert model.logit_bias is None
    else:
        assert model.logit_bias.item() == pytest.approx(-7.5)


def test_a_new_image_size_resizes_the_position_embeddings_as_open_clip_does(tmp_path):
    config, weights, _ = open_clip_checkpoint(tmp_path)
    model, transforms, _ = create_model({"open_clip": {"name": str(config), "weights": str(weights),
                                                       "image_size": 96}})
    reference = open_clip.create_model("small-clip", force_image_size=96).eval()
    open_clip.load_checkpoint(reference, str(weights))  # open_clip's own resize on load
    assert model.towers["image"].encoder.positional_embedding.shape == (37, 64)  # 6 x 6 patches + class token
    torch.testing.assert_close(model.towers["image"].encoder.positional_embedding,
                               reference.visual.positional_embedding, rtol=0, atol=0)
    assert transforms.eval["image"].transforms[0].size == 96
    model.eval()
    ours = embeddings(lambda x: model.encode("image", x), lambda t: model.encode("text", t), 96)
    theirs = embeddings(lambda x: reference.encode_image(x, normalize=True),
                        lambda t: reference.encode_text(t, normalize=True), 96)
    torch.testing.assert_close(ours["image"], theirs["image"], rtol=0, atol=1e-6)


def test_import_then_export_gives_back_the_checkpoint(tmp_path):
    config, weights, _ = open_clip_checkpoint(tmp_path, init_logit_bias=-10.0)
    model, _, _ = create_model({"open_clip": {"name": str(config), "weights": str(weights)}})
    exported = load_file(export_open_clip(model, tmp_path / "exported") / WEIGHTS)
    original = load_file(weights)
    assert exported.keys() == original.keys()
    assert [k for k in original if not torch.equal(exported[k], original[k])] == []
    # An mmcl checkpoint of the imported model stands alone: its model.yaml lists the towers, not the source file.
    weights.unlink()
    reloaded, _, _ = load_model(save_model(model, tmp_path / "checkpoint"))
    assert reloaded.config.open_clip is None and torch.equal(reloaded.logit_bias, model.logit_bias)


def test_a_torch_training_checkpoint_is_read_safely(tmp_path):
    config, weights, _ = open_clip_checkpoint(tmp_path)
    state = load_file(weights)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "epoch_3.pt")
    model, _, _ = create_model({"open_clip": {"name": str(config), "weights": str(tmp_path / "epoch_3.pt")}})
    assert torch.equal(model.towers["text"].encoder.token_embedding.weight, state["token_embedding.weight"])


def test_mistakes_are_named(tmp_path):
    config, weights, _ = open_clip_checkpoint(tmp_path)
    with pytest.raises(UserError, match="unknown open_clip model 'ViT-Nope'"):
        create_model({"open_clip": {"name": "ViT-Nope"}})
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**SMALL, "embed_dim": 48}))
    with pytest.raises(UserError, match="weights do not fit"):
        create_model({"open_clip": {"name": str(other), "weights": str(weights)}})
    with pytest.raises(UserError, match="give either open_clip or embed_dim and towers"):
        create_model({"open_clip": {"name": str(config)}, "embed_dim": 8, "towers": {}})
    with pytest.raises(UserError, match="hf_tokenizer_name"):
        create_model({"open_clip": {"name": "ViT-B-16-SigLIP"}})
