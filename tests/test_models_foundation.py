"""The multimodal model contract: every built-in config, the temperature, and safetensors checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from mmcl.errors import UserError
from mmcl.models import create_model, list_models, load_model, save_model, summarize
from mmcl.models.factory import resolve_model_config


@pytest.fixture(autouse=True)
def single_thread():
    """These models are tiny: one thread is as fast, and on a loaded 2-core box two spin-waiting threads are ~100x
    slower. Other test modules of mmcl.models import this fixture."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _shallow(name: str) -> dict:
    """A built-in config with one block per tower and 1 s audio clips: same widths and wiring, CPU-test fast."""
    cfg = resolve_model_config(name).model_dump()
    for tower in cfg["towers"].values():
        if tower["type"].startswith("open_clip"):
            tower["cfg"]["layers"] = 1
        if tower["type"] == "ast":
            tower["kwargs"]["depth"] = 1
        if "front_end" in tower:
            tower["front_end"]["clip_seconds"] = 1.0
    return cfg


def test_builtin_models_are_registered():
    assert {"tiny", "tiny-audio", "small", "vit-b-32-audio"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_builtin_model_returns_unit_norm_embeddings(name):
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model(_shallow(name))
    model.eval()
    assert set(transforms.eval) == set(transforms.train) == set(model.modalities) - {"text"}
    assert (tokenizer is None) == ("text" not in model.modalities)
    batch = {m: tower.example_input(3) for m, tower in model.towers.items()}
    with torch.no_grad():
        out = model(batch)
    for m in model.modalities:
        assert out[m].shape == (3, model.config.embed_dim)
        torch.testing.assert_close(out[m].norm(dim=-1), torch.ones(3))
        assert not torch.allclose(out[m][0], out[m][1])  # inputs differ, so must embeddings
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_only_modalities_in_the_batch_are_encoded():
    model, _, tokenizer = create_model("tiny-audio")
    out = model({"text": tokenizer(["a dog barking"])})
    assert set(out) == {"text", "logit_scale"}


def test_logit_scale_is_clamped_and_bias_is_optional():
    model, _, _ = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model({})["logit_scale"].item() == pytest.approx(100.0)
    assert "logit_bias" not in model({})
    sig = create_model({**resolve_model_config("tiny").model_dump(), "logit_bias_init": -10.0,
                        "logit_scale_init": 2.302585})[0]
    out = sig({})
    assert out["logit_bias"].item() == pytest.approx(-10.0)
    assert out["logit_scale"].item() == pytest.approx(10.0, rel=1e-5)
    assert out["logit_bias"].requires_grad and out["logit_scale"].requires_grad


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny-audio")
    with torch.no_grad():
        model.logit_scale.add_(0.5)  # differ from a fresh model
    save_model(model, tmp_path / "ckpt")
    loaded, loaded_transforms, _ = load_model(tmp_path / "ckpt")
    batch = {"image": torch.randn(2, 3, 64, 64), "text": tokenizer(["one", "two"]),
             "audio": transforms.eval["audio"](torch.randn(1, 8000), 16000).expand(2, -1, -1, -1)}
    model.eval(), loaded.eval()
    a, b = model(batch), loaded(batch)
    assert set(a) == set(b) == {"image", "text", "audio", "logit_scale"}
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert loaded.config == model.config
    assert loaded_transforms.eval["audio"].cfg == transforms.eval["audio"].cfg


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


def test_timm_image_tower_by_name():
    cfg = {"embed_dim": 24, "towers": {"image": {"type": "timm_image", "model_name": "timm/vit_tiny_patch16_224",
                                                 "kwargs": {"depth": 1, "img_size": 32}, "image_size": 32}}}
    model, transforms, tokenizer = create_model(cfg)
    image = transforms.eval["image"](Image.new("RGB", (50, 40), (200, 30, 30)))
    assert image.shape == (3, 32, 32) and tokenizer is None
    assert model({"image": image[None]})["image"].shape == (1, 24)
    cfg["towers"]["image"]["kwargs"] = {"depth": 1}
    with pytest.raises(UserError, match=r"takes \(224, 224\) images but image_size is 32; set kwargs.img_size: 32"):
        create_model(cfg)
    cfg["towers"]["image"]["model_name"] = "no_such_net"
    with pytest.raises(UserError, match="timm model 'no_such_net'"):
        create_model(cfg)


def test_flop_summary_matches_the_vit_formula():
    """Counted FLOPs of the tiny image ViT equal 2 x multiply-adds worked out by hand, attention included."""
    model, _, _ = create_model("tiny")
    (image, text) = summarize(model)
    width, mlp, layers, patch, embed = 64, 128, 2, 8, 64
    patches = (64 // patch) ** 2
    tokens = patches + 1  # plus the class token
    macs = (patches * 3 * patch * patch * width  # patch embedding
            + layers * (tokens * (4 * width * width + 2 * width * mlp)  # qkv, out, mlp projections
                        + 2 * tokens * tokens * width)  # scores and weighted values
            + width * embed)  # final projection of the pooled token
    assert (image.modality, image.kind, image.input_shape) == ("image", "open_clip_vision", (3, 64, 64))
    assert image.flops == 2 * macs
    assert image.params == image.trainable == sum(p.numel() for p in model.towers["image"].parameters())
    assert text.input_shape == (32,) and text.flops > 0


def test_models_show_prints_parameters_and_flops_per_tower(capsys):
    from pipelines.cli import main

    assert main(["models", "show", "tiny-audio"]) == 0
    out = capsys.readouterr().out
    assert "type: ast" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[-4:]}
    assert set(rows) == {"image", "text", "audio", "total"}
    assert rows["audio"][1:3] == ["ast", "1x64x201"]
    assert int(rows["total"][1].replace(",", "")) == sum(int(rows[m][3].replace(",", "")) for m in ("image", "text", "audio"))


@pytest.mark.parametrize("name", ["CLIPVisionCfg", "CLIPTextCfg"])
def test_open_clip_config_keys_read_from_its_source_are_its_dataclass_fields(name):
    # Config validation reads them from the source so as not to import open_clip (seconds) in a launcher.
    import dataclasses

    from open_clip import model

    from mmcl.models.config import open_clip_source_fields

    assert open_clip_source_fields(name) == {f.name for f in dataclasses.fields(getattr(model, name))}
