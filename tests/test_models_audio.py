"""Audio towers end to end: waveform ▶ the tower's own front end ▶ tower, trained against text."""

from __future__ import annotations

import math

import torch

from mmcl.losses import create_loss
from mmcl.models import create_model
from tests.test_models_foundation import single_thread  # noqa: F401  (autouse)

RATE = 16000
FREQS = [220 * 2 ** (i / 2) for i in range(8)]  # eight tones half an octave apart


def _batch(transform, tokenizer) -> dict:
    t = torch.arange(RATE) / RATE
    waves = [0.3 * torch.sin(2 * math.pi * f * t + float(torch.rand(()) * 6)) + 0.01 * torch.randn(RATE)
             for f in FREQS]
    return {"audio": torch.stack([transform(w[None], RATE) for w in waves]),
            "text": tokenizer([f"a pure tone number {i}" for i in range(len(FREQS))])}


def test_tiny_audio_learns_to_match_tones_to_captions():
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny-audio")
    loss_fn = create_loss("clip", modalities=["audio", "text"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)  # 2e-3 diverged on 6 seeds of 10
    losses = []
    for _ in range(60):
        loss = sum(loss_fn(model(_batch(transforms.train["audio"], tokenizer))).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        out = model(_batch(transforms.eval["audio"], tokenizer))
    top1 = ((out["audio"] @ out["text"].T).argmax(dim=1) == torch.arange(len(FREQS))).float().mean().item()
    assert losses[0] > math.log(len(FREQS)) - 0.3  # starts at chance
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    assert top1 >= 0.5  # chance is 1/8
