"""One training step of mmcl equals one of open_clip's trainer, fed the very same batches.

The reference is open_clip itself: its CLIP model (mmcl's initial weights renamed onto it), its ClipLoss, the
AdamW parameter groups `open_clip_train.main` builds (its exclusion rule transcribed below) and its `cosine_lr`
schedule, stepped in its order (schedule, forward, backward, step, clamp). mmcl runs its own components in the
recipe's order. Any systematic difference between the trainers' steps (loss reduction, weight-decay groups, the
schedule's first step, the temperature clamp) shows up as diverging losses or weights.
"""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
from open_clip.loss import ClipLoss
from open_clip_train.scheduler import cosine_lr

from benchmarks.peer_models import MODELS, open_clip_name, register_open_clip
from mmcl.interop.open_clip_format import to_open_clip_state
from mmcl.losses.objective import LossTermConfig, Objective
from mmcl.models import create_model
from mmcl.optim import OptimConfig, build_optimizer, build_scheduler
from mmcl.training.task import ContrastiveTask

STEPS, WARMUP, LR, WD, BATCH = 6, 2, 2e-3, 1.0, 8


def open_clip_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """Transcribed from open_clip_train/main.py: no decay on gains, biases and the temperature."""
    named = list(model.named_parameters())
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    return torch.optim.AdamW([
        {"params": [p for n, p in named if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p) and p.requires_grad], "weight_decay": WD},
    ], lr=LR, betas=(0.9, 0.98), eps=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Losses and final weights of both trainers over the same STEPS batches."""
    torch.manual_seed(0)
    model, _, tokenizer = create_model({"embed_dim": MODELS["tiny"]["embed_dim"], "towers": {
        "image": {"type": "open_clip_vision", "cfg": MODELS["tiny"]["vision_cfg"]},
        "text": {"type": "open_clip_text", "cfg": MODELS["tiny"]["text_cfg"]}}})
    register_open_clip(tmp_path_factory.mktemp("open_clip"), "tiny")
    reference = open_clip.create_model(open_clip_name("tiny"))
    reference.load_state_dict(to_open_clip_state(model.state_dict()))

    cfg = OptimConfig(lr=LR, weight_decay=WD, warmup_steps=WARMUP, schedule="cosine")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, STEPS, cfg)
    task = ContrastiveTask(model, model, Objective([LossTermConfig(name="clip")]))
    reference_optimizer = open_clip_optimizer(reference)
    adjust_lr = cosine_lr(reference_optimizer, LR, WARMUP, STEPS)
    reference_loss = ClipLoss()

    generator = torch.Generator().manual_seed(1)
    losses, reference_losses = [], []
    for step in range(STEPS):
        batch = {"image": torch.randn(BATCH, 3, 64, 64, generator=generator),
                 "text": tokenizer([f"a photo of {n} red circles" for n in
                                    torch.randint(0, 10_000, (BATCH,), generator=generator).tolist()])}
        # mmcl, in the recipe's order
        total, _, _ = task.training_step([batch], lambda loss: loss.backward(), None, check=lambda t, terms: True)
        optimizer.step()
        task.after_optimizer_step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total.item())
        # open_clip_train, in its order
        adjust_lr(step)
        reference.train()
        image_features, text_features, logit_scale = reference(batch["image"], batch["text"])
        loss = reference_loss(image_features, text_features, logit_scale)
        reference_optimizer.zero_grad()
        loss.backward()
        reference_optimizer.step()
        with torch.no_grad():
            reference.logit_scale.clamp_(0, math.log(100))
        reference_losses.append(loss.item())
    return losses, reference_losses, to_open_clip_state(model.state_dict()), reference.state_dict()


def test_losses_follow_open_clip_step_by_step(trained):
    losses, reference_losses, _, _ = trained
    # The first step starts from identical weights; later ones from weights updated by each trainer's AdamW
    # (mmcl's fused kernel, open_clip's per-parameter loop), equal up to float rounding.
    assert losses == pytest.approx(reference_losses, abs=1e-4)
    assert losses[0] == pytest.approx(reference_losses[0], abs=1e-6)


def test_weights_after_training_equal_open_clip(trained):
    _, _, weights, reference_weights = trained
    assert weights.keys() == reference_weights.keys()
    for name, value in reference_weights.items():
        if value.dtype.is_floating_point:
            # Rounding differences between the AdamW kernels move parameters whose gradient is pure rounding noise
            # (attention key biases) by up to ~2e-5; a parameter decayed by one trainer and not the other would
            # differ by about sum(lr) x wd x |w| (~3e-4 for the embeddings).
            assert torch.allclose(weights[name], value, atol=6e-5), name
