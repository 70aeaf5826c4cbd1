"""Weight-decay exclusions and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from mmcl.models import create_model
from mmcl.optim import OptimConfig, build_optimizer, lr_factor, param_groups


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
