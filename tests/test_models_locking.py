"""LiT locking (all layers, or all but the last N groups) and gradient checkpointing, per tower kind."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from mmcl.config import ConfigError
from mmcl.errors import UserError
from mmcl.models import create_model
from mmcl.models.factory import resolve_model_config
from mmcl.models.locking import layer_groups
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse)

CNN_AUDIO = {"type": "audio_cnn", "channels": [4, 8], "front_end": {"clip_seconds": 0.5}}


def _config(name: str = "tiny", **tower_updates) -> dict:
    cfg = resolve_model_config(name).model_dump()
    for modality, update in tower_updates.items():
        base = {} if "type" in update else cfg["towers"][modality]
        cfg["towers"][modality] = {**base, **update}
    return cfg


def _backward(model) -> None:
    batch = {m: tower.example_input(2) for m, tower in model.towers.items()}
    out = model(batch)
    sum((out[m] * torch.randn_like(out[m])).sum() for m in model.modalities).backward()


def _has_grad(model, prefix: str) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0)
            for n, p in model.named_parameters() if n.startswith(prefix)}


def test_locked_tower_gets_no_gradient_and_the_other_does():
    torch.manual_seed(0)
    model, _, _ = create_model(_config(image={"locked": True}))
    _backward(model)
    image, text = _has_grad(model, "towers.image."), _has_grad(model, "towers.text.")
    assert len(image) > 10 and not any(image.values())
    assert all(text.values())
    assert model.logit_scale.requires_grad


@pytest.mark.parametrize("unlocked, trainable_prefixes", [
    (1, ("encoder.proj", "encoder.ln_post")),
    (2, ("encoder.proj", "encoder.ln_post", "encoder.transformer.resblocks.1.")),
])
def test_all_but_last_groups_locked(unlocked, trainable_prefixes):
    torch.manual_seed(0)
    model, _, _ = create_model(_config(image={"locked": True, "unlocked_layers": unlocked}))
    _backward(model)
    for name, got_grad in _has_grad(model, "towers.image.").items():
        assert got_grad == name.removeprefix("towers.image.").startswith(trainable_prefixes), name


def test_locked_cnn_layers_keep_batchnorm_statistics():
    torch.manual_seed(0)
    model, _, _ = create_model(_config("tiny-audio", audio={**CNN_AUDIO, "locked": True, "unlocked_layers": 2}))
    blocks = model.towers["audio"].encoder.trunk.blocks
    # block 0 (its BatchNorms now hold buffers, not parameters), block 1, projection
    assert [len(g) for g in layer_groups(model.towers["audio"])] == [2, 6, 1]
    frozen_bn, live_bn = blocks[0][1], blocks[1][1]
    assert isinstance(frozen_bn, FrozenBatchNorm2d) and isinstance(live_bn, torch.nn.BatchNorm2d)
    before = frozen_bn.running_mean.clone(), live_bn.running_mean.clone()
    model.train()
    _backward(model)
    assert torch.equal(frozen_bn.running_mean, before[0])
    assert not torch.equal(live_bn.running_mean, before[1])
    grads = _has_grad(model, "towers.audio.")
    assert grads["towers.audio.proj.weight"] and grads["towers.audio.encoder.trunk.blocks.1.0.weight"]
    assert not any(v for n, v in grads.items() if ".blocks.0." in n)


def test_more_unlocked_layers_than_groups_is_a_user_error():
    with pytest.raises(UserError, match="unlocked_layers is 99 but the tower has only 4 layer groups"):
        create_model(_config(image={"locked": True, "unlocked_layers": 99}))
    with pytest.raises(ConfigError, match="unlocked_layers is only used with locked: true"):
        create_model(_config(image={"unlocked_layers": 1}))


def test_grad_checkpointing_is_on_and_gives_the_same_gradients():
    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        towers = {m: {"grad_checkpointing": checkpointing} for m in ("image", "text")}
        towers["audio"] = {**CNN_AUDIO, "grad_checkpointing": checkpointing}
        towers["ast"] = {**resolve_model_config("tiny-audio").towers["audio"].model_dump(),
                         "grad_checkpointing": checkpointing}
        towers["ast"]["front_end"]["clip_seconds"] = 0.5
        torch.manual_seed(0)
        model, _, _ = create_model(_config("tiny-audio", **towers))
        if checkpointing:
            assert model.towers["image"].encoder.transformer.grad_checkpointing
            assert model.towers["text"].encoder.transformer.grad_checkpointing
            assert model.towers["audio"].encoder.trunk.grad_checkpointing
            assert model.towers["ast"].encoder.trunk.grad_checkpointing
        model.train()
        torch.manual_seed(1)
        _backward(model)
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


@pytest.mark.parametrize("tower", [
    {"type": "open_clip_vision", "cfg": {"layers": [1, 1, 1, 1], "width": 16, "head_width": 16, "image_size": 64}},
    {"type": "open_clip_vision", "cfg": {"timm_model_name": "resnet10t", "timm_proj": "linear", "image_size": 32}},
    {"type": "timm_image", "model_name": "convnext_atto", "image_size": 32},
    {"type": "ast", "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}, "front_end": {"clip_seconds": 0.5}},
], ids=["modified_resnet", "open_clip_timm_trunk", "timm_convnext", "ast"])
def test_every_tower_kind_locks_all_but_its_head(tower):
    """Stem first, head (final projection) last, whatever the architecture's parameter names."""
    torch.manual_seed(0)
    model, _, _ = create_model({"embed_dim": 16, "towers": {"x": {**tower, "locked": True, "unlocked_layers": 1}}})
    groups = layer_groups(model.towers["x"])
    assert len(groups) >= 4
    assert any(k in groups[0][0] for k in ("conv1", "stem", "cls_token"))
    model.train()
    out = model.encode("x", model.towers["x"].example_input(2))
    (out * torch.randn_like(out)).sum().backward()
    got_grad = {n.removeprefix("towers.x.") for n, p in model.named_parameters() if p.grad is not None}
    assert got_grad == set(groups[-1])
    assert any("proj" in n for n in got_grad)
