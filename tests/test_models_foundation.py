"""The multimodal model contract and safetensors checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from mmcl.errors import UserError
from mmcl.models import create_model, list_models, load_model, save_model


def test_every_builtin_model_returns_unit_norm_embeddings():
    assert "tiny" in list_models()
    for name in list_models():
        model, transforms, tokenizer = create_model(name)
        model.eval()
        batch = {}
        if "image" in model.modalities:
            size = transforms.eval["image"].transforms[0].size
            batch["image"] = torch.randn(2, 3, size, size)
        if "text" in model.modalities:
            batch["text"] = tokenizer(["a red circle", "a blue square"])
        out = model(batch)
        for m in batch:
            assert out[m].shape == (2, model.config.embed_dim)
            torch.testing.assert_close(out[m].norm(dim=-1), torch.ones(2))
        assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_logit_scale_is_clamped():
    model, _, _ = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model({})["logit_scale"].item() == pytest.approx(100.0)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model, _, tokenizer = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.add_(0.5)  # differ from a fresh model
    save_model(model, tmp_path / "ckpt")
    loaded, _, _ = load_model(tmp_path / "ckpt")
    batch = {"image": torch.randn(2, 3, 64, 64), "text": tokenizer(["one", "two"])}
    model.eval(), loaded.eval()
    a, b = model(batch), loaded(batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_folder_never_unpickles(tmp_path):
    """A weights file that is a pickle (which could run code) is refused, not executed."""
    model, _, _ = create_model("tiny")
    folder = save_model(model, tmp_path / "ckpt")

    class Exploit:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    (folder / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UserError, match="not a valid safetensors file.*never unpickles"):
        load_model(folder)


def test_not_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a model checkpoint"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="unknown model 'nope'"):
        create_model("nope")
