"""Weight-decay exclusions and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from mmcl.models import create_model
from mmcl.errors import UserError
from mmcl.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor, param_groups


def test_decay_groups_are_open_clips():
    """open_clip_train's rule, transcribed: no decay where p.ndim < 2 or the name holds bn/ln/bias/logit_scale;
    embedding matrices are decayed, as in CLIP."""
    model, _, _ = create_model("tiny")
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in model.named_parameters() if exclude(n, p)}
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if not exclude(n, p)}
    assert "towers.text.encoder.token_embedding.weight" in {names[id(p)] for p in decay["params"]}


def test_norms_are_not_decayed_whatever_their_name():
    """Norm layers stay undecayed by their type, whatever they are called (a Hugging Face `LayerNorm` has no "ln")."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p for p in decay["params"]] == [model[0].weight]
    assert len(no_decay["params"]) == 3


def test_warmup_then_cosine_to_zero():
    cfg = OptimConfig(warmup_steps=10, schedule="cosine")
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(110, 110, cfg) == pytest.approx(0.0)


def test_constant_with_cooldown():
    cfg = OptimConfig(warmup_steps=0, schedule="constant_cooldown", cooldown_steps=10)
    assert lr_factor(89, 100, cfg) == 1.0
    assert lr_factor(95, 100, cfg) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cooldown_steps is only used"):
        OptimConfig(schedule="cosine", cooldown_steps=5)


def test_fused_adamw_takes_the_reference_implementations_steps():
    """The fused kernel (the default, for speed) follows torch's per-parameter AdamW with our groups and settings."""
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    models = [create_model("tiny")[0] for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [build_optimizer(models[0], cfg), build_optimizer(models[1], cfg.model_copy(update={"fused": False}))]
    assert [g["fused"] for g in optimizers[0].param_groups] == [True, True]
    assert [g["fused"] for g in optimizers[1].param_groups] == [False, False]
    torch.manual_seed(0)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in models[0].parameters()]
        for model, optimizer in zip(models, optimizers):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            optimizer.step()
    moved = max((a - b).abs().max().item() for a, b in zip(*(m.parameters() for m in models)))
    assert moved < 1e-6


def lr_by_name(model, optimizer) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_per_tower_and_temperature_multipliers_scale_each_parameters_rate():
    model, _, _ = create_model("tiny")
    cfg = OptimConfig(lr=1e-3, lr_multipliers={"image": 0.1, "temperature": 0.0})
    rates = lr_by_name(model, build_optimizer(model, cfg))
    assert len(rates) == sum(1 for p in model.parameters() if p.requires_grad)  # every parameter, once
    for name, lr in rates.items():
        expected = 0.0 if name == "logit_scale" else 1e-4 if name.startswith("towers.image.") else 1e-3
        assert lr == pytest.approx(expected), name


def test_layer_decay_follows_the_towers_layer_groups_stem_to_head():
    # tiny's text tower: stem (token and position embeddings), 2 residual blocks, head (ln_final, projection):
    # G = 4 groups, so the stem trains at decay^3, block 0 at decay^2, block 1 at decay, the head at 1.
    model, _, _ = create_model("tiny")
    cfg = OptimConfig(lr=1.0, layer_decay={"text": 0.5}, weight_decay=0.1)
    rates = lr_by_name(model, build_optimizer(model, cfg))
    text = {n.removeprefix("towers.text.encoder."): lr for n, lr in rates.items() if n.startswith("towers.text.")}
    assert text["token_embedding.weight"] == text["positional_embedding"] == pytest.approx(0.125)
    assert [lr for n, lr in text.items() if n.startswith("transformer.resblocks.0.")] == pytest.approx([0.25] * 12)
    assert [lr for n, lr in text.items() if n.startswith("transformer.resblocks.1.")] == pytest.approx([0.5] * 12)
    assert text["ln_final.weight"] == text["text_projection"] == pytest.approx(1.0)
    assert {lr for n, lr in rates.items() if n.startswith("towers.image.")} == {1.0}


def test_the_schedule_scales_every_groups_own_peak_rate():
    model, _, _ = create_model("tiny")
    cfg = OptimConfig(lr=1e-3, warmup_steps=4, lr_multipliers={"text": 0.5})
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, 20, cfg)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    rates = lr_by_name(model, optimizer)
    assert rates["towers.text.encoder.text_projection"] == pytest.approx(0.5 * rates["towers.image.encoder.proj"])
    assert rates["towers.image.encoder.proj"] == pytest.approx(1e-3 * lr_factor(2, 20, cfg))


def test_rate_settings_are_checked():
    model, _, _ = create_model("tiny")
    with pytest.raises(UserError, match=r"name \['audio'\], which are neither towers of the model \(image, text\)"):
        build_optimizer(model, OptimConfig(lr_multipliers={"audio": 0.1}))
    with pytest.raises(ValueError, match="a multiplier must be 0 or more"):
        OptimConfig(lr_multipliers={"image": -1})
    with pytest.raises(ValueError, match=r"a decay must be in \(0, 1\]"):
        OptimConfig(layer_decay={"image": 1.5})
