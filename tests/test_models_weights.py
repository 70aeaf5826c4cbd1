"""Initial tower weights from local files: open_clip checkpoints, timm state dicts, key reports, no unpickling."""

from __future__ import annotations

import json
import pickle

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mmcl.errors import UserError
from mmcl.models import create_model, load_model, save_model
from mmcl.models.factory import resolve_model_config
from mmcl.models.weights import read_state_dict
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse)

TINY = resolve_model_config("tiny")


@pytest.fixture(scope="module")
def open_clip_model(tmp_path_factory):
    """A CLIP built by open_clip's own factory from the tiny config's towers (random init, nothing downloaded)."""
    path = tmp_path_factory.mktemp("oc") / "mmcl-test-tiny.json"
    path.write_text(json.dumps({"embed_dim": TINY.embed_dim, "vision_cfg": TINY.towers["image"].cfg,
                                "text_cfg": TINY.towers["text"].cfg}))
    open_clip.add_model_config(path)
    torch.manual_seed(1)
    model = open_clip.create_model("mmcl-test-tiny", pretrained=None)
    return model.eval()


def _with_weights(**paths) -> dict:
    cfg = TINY.model_dump()
    for modality, path in paths.items():
        cfg["towers"][modality]["weights"] = {"path": str(path)}
    return cfg


@pytest.mark.parametrize("fmt", ["training_pt", "safetensors"])
def test_open_clip_checkpoint_gives_identical_embeddings(open_clip_model, tmp_path, fmt):
    state = open_clip_model.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "clip.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:  # what open_clip's training loop writes: DDP-prefixed weights nested beside other entries
        path = tmp_path / "epoch_1.pt"
        torch.save({"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model, _, tokenizer = create_model(_with_weights(image=path, text=path))
    model.eval()
    images = torch.randn(3, 3, 64, 64)
    tokens = tokenizer(["a red circle", "a blue square", "two green triangles"])
    assert torch.equal(tokens, open_clip.get_tokenizer("mmcl-test-tiny")(["a red circle", "a blue square",
                                                                         "two green triangles"]))
    with torch.no_grad():
        ours = model({"image": images, "text": tokens})
        theirs_image = F.normalize(open_clip_model.encode_image(images), dim=-1)
        theirs_text = F.normalize(open_clip_model.encode_text(tokens), dim=-1)
    assert torch.equal(ours["image"], theirs_image)
    # The text tower runs only the columns the captions use (the same function: causal attention never sees the
    # padding), so its sums are taken over fewer terms: equal to rounding.
    torch.testing.assert_close(ours["text"], theirs_text, atol=1e-6, rtol=0)
    fresh, _, _ = create_model("tiny")
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh.encode("image", images), ours["image"], atol=1e-3)
    # The checkpoint holds the loaded weights: the initial-weights file is no longer needed.
    folder = save_model(model, tmp_path / "ckpt")
    path.unlink()
    loaded, _, _ = load_model(folder)
    assert loaded.config.towers["image"].weights is None
    with torch.no_grad():
        assert torch.equal(loaded.eval().encode("image", images), ours["image"])


def test_timm_state_dict_loads_into_timm_tower(tmp_path):
    torch.manual_seed(2)
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=10).eval()
    path = tmp_path / "resnet.safetensors"
    save_file(reference.state_dict(), path)
    cfg = {"embed_dim": 16, "towers": {"image": {"type": "timm_image", "model_name": "resnet10t", "image_size": 32,
                                                 "weights": {"path": str(path)}}}}
    with pytest.raises(UserError, match=r"unexpected \(ignored\): fc\.bias, fc\.weight.*strict: false"):
        create_model(cfg)
    cfg["towers"]["image"]["weights"]["strict"] = False
    model, _, _ = create_model(cfg)
    tower = model.towers["image"].eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tower.encoder(x), reference.forward_head(reference.forward_features(x),
                                                                            pre_logits=True))


def test_missing_keys_are_reported(tmp_path, caplog):
    path = tmp_path / "partial.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(64, 3, 8, 8)}, path)
    with pytest.raises(UserError, match=r"image tower: .*loaded 1 tensors; missing \(left at init\): "):
        create_model(_with_weights(image=path))
    cfg = _with_weights(image=path)
    cfg["towers"]["image"]["weights"]["strict"] = False
    model, _, _ = create_model(cfg)
    assert torch.count_nonzero(model.towers["image"].encoder.conv1.weight) == 0
    assert "missing (left at init)" in caplog.text


def test_bad_prefix_and_shape_mismatch_are_user_errors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"visual.conv1.weight": torch.zeros(8, 3, 2, 2)}, path)
    cfg = _with_weights(image=path)
    with pytest.raises(UserError, match="weights do not fit the tower"):
        create_model(cfg)
    cfg["towers"]["image"]["weights"]["prefix"] = "vision."
    with pytest.raises(UserError, match="no keys start with 'vision.'"):
        create_model(cfg)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Exploit()}, protocol=2))
    with pytest.raises(UserError, match="refused: .*could run code.*convert it to safetensors"):
        read_state_dict(path)
    torch.save({"state_dict": {"w": torch.ones(1)}, "exploit": Exploit()}, tmp_path / "evil_zip.pt")
    with pytest.raises(UserError, match="refused"):
        create_model(_with_weights(image=tmp_path / "evil_zip.pt"))
    assert not marker.exists()


def test_timm_vit_state_dict_loads_into_ast_trunk(tmp_path):
    """An AST tower's weights file is a plain timm ViT state dict (1 input channel, the spectrogram's size)."""
    tower_cfg = {"type": "ast", "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2},
                 "front_end": {"clip_seconds": 0.5, "n_mels": 32}}
    torch.manual_seed(3)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=1,
                                  img_size=(32, 51), depth=1, embed_dim=32, num_heads=2).eval()
    path = tmp_path / "ast.safetensors"
    save_file(reference.state_dict(), path)
    model, _, _ = create_model({"embed_dim": 8, "towers": {"audio": {**tower_cfg, "weights": {"path": str(path)}}}})
    spec = torch.randn(2, 1, 32, 51)
    with torch.no_grad():
        assert torch.equal(model.towers["audio"].encoder.eval()(spec), reference((spec + 20.0) / 20.0))
