"""Tower option ``missing: learned`` (Symile-M3): rows lacking a modality stay in the loss with a learned embedding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcl.losses import create_loss
from mmcl.models.factory import create_model
from mmcl.models.multimodal import MultimodalModel
from mmcl.models.towers import Tower

ROWS, WIDTH, DIM = 6, 5, 8
ABSENT_IMAGES = [4, 5]


def linear_model(learned_missing=()) -> MultimodalModel:
    torch.manual_seed(0)
    towers = {m: Tower(nn.Linear(WIDTH, DIM), group_matcher={}) for m in ("image", "text", "audio")}
    return MultimodalModel(towers, logit_scale_init=1.0, logit_scale_max=100.0, learned_missing=learned_missing,
                           embed_dim=DIM)


def batch_missing_images() -> dict:
    gen = torch.Generator().manual_seed(1)
    batch = {m: torch.randn(ROWS, WIDTH, generator=gen).requires_grad_() for m in ("image", "text")}
    batch["image_mask"] = torch.tensor([i not in ABSENT_IMAGES for i in range(ROWS)])
    return batch


def clip_reference(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, written out (Radford et al. 2021, Fig. 3)."""
    logits = scale * image @ text.T
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@pytest.mark.parametrize("option", ["drop", "learned"])
def test_rows_missing_a_modality_get_gradient_only_with_a_learned_embedding(option):
    model = linear_model(learned_missing=["image"] if option == "learned" else [])
    batch = batch_missing_images()
    outputs = model(batch)
    loss = create_loss("clip")(outputs, batch)["clip/image-text"]
    loss.backward()
    text_grad_norms = batch["text"].grad.norm(dim=1)
    assert (text_grad_norms[:4] > 0).all()
    if option == "learned":
        assert (text_grad_norms[ABSENT_IMAGES] > 0).all()
        assert model.missing["image"].grad.norm() > 0
    else:
        assert (text_grad_norms[ABSENT_IMAGES] == 0).all()
    # The image tower never learns from the placeholder inputs of absent rows.
    assert (batch["image"].grad[ABSENT_IMAGES] == 0).all()


def test_the_loss_over_stand_in_rows_is_clip_with_the_learned_vector_in_place():
    model = linear_model(learned_missing=["image"])
    batch = batch_missing_images()
    outputs = model(batch)
    with torch.no_grad():
        image = model.towers["image"](batch["image"])
        image[ABSENT_IMAGES] = model.missing["image"]
        text = model.towers["text"](batch["text"])
        expected = clip_reference(F.normalize(image, dim=-1), F.normalize(text, dim=-1), outputs["logit_scale"].item())
    got = create_loss("clip")(outputs, batch)["clip/image-text"]
    torch.testing.assert_close(got, expected)


def test_a_row_made_only_of_stand_ins_and_one_modality_terms_use_real_rows():
    model = linear_model(learned_missing=["image", "text"])
    batch = batch_missing_images()
    batch["text_mask"] = torch.tensor([True, True, True, True, True, False])  # row 5 has neither
    outputs = model(batch)
    with torch.no_grad():
        image = F.normalize(model.towers["image"](batch["image"]), dim=-1)
        image[4] = F.normalize(model.missing["image"], dim=-1)
        text = F.normalize(model.towers["text"](batch["text"]), dim=-1)
        expected = clip_reference(image[:5], text[:5], outputs["logit_scale"].item())
        real_images = image[:4]
        uniformity = torch.log(torch.exp(-2 * torch.pdist(real_images) ** 2).mean())  # Wang & Isola, Eq. 4
    torch.testing.assert_close(create_loss("clip")(outputs, batch)["clip/image-text"], expected)
    torch.testing.assert_close(create_loss("uniformity", modalities=["image"])(outputs, batch)["uniformity/image"],
                               uniformity)


def test_symile_keeps_rows_missing_one_of_three_modalities():
    model = linear_model(learned_missing=["audio"])
    gen = torch.Generator().manual_seed(2)
    batch = {m: torch.randn(ROWS, WIDTH, generator=gen).requires_grad_() for m in ("image", "text", "audio")}
    batch["audio_mask"] = torch.tensor([True, False, True, False, True, True])
    loss = create_loss("symile", modalities=["image", "text", "audio"], negative_sampling="n_squared")
    sum(loss(model(batch), batch).values()).backward()
    assert (batch["image"].grad.norm(dim=1) > 0).all()  # rows 1 and 3 included
    assert (batch["audio"].grad[[1, 3]] == 0).all()


def test_the_config_option_builds_a_learned_embedding_that_a_checkpoint_keeps(tmp_path):
    from mmcl.models.checkpoint import load_model, save_model

    model, _, _ = create_model({"embed_dim": 16, "towers": {
        "image": {"type": "timm_image", "model_name": "resnet10t", "image_size": 32, "missing": "learned"},
        "text": {"type": "open_clip_text", "cfg": {"width": 32, "heads": 2, "layers": 1, "context_length": 16,
                                                   "vocab_size": 49408}}}})
    assert list(model.missing) == ["image"] and model.missing["image"].shape == (16,)
    with torch.no_grad():
        model.missing["image"].fill_(0.25)
    loaded, _, _ = load_model(save_model(model, tmp_path / "checkpoint"))
    assert torch.equal(loaded.missing["image"], model.missing["image"])
