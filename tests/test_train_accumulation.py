"""Accumulating k micro-batches gives the gradients of one batch k times larger (negatives included), also when the
model draws dropout / drop-path masks and the loss draws negatives (Symile, negative_sampling n).

The reference for a model with randomness is the model applied to the micro-batches in turn from the same RNG state
(masks drawn micro-batch by micro-batch, as accumulation's cached pass draws them), then one loss over the
concatenation and one backward; see mmcl.training.accumulation.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import nn

from mmcl.losses.objective import LossTermConfig, Objective
from mmcl.models import create_model
from mmcl.models.multimodal import MultimodalModel
from mmcl.models.towers import Tower
from mmcl.training.accumulation import concat_batches, forward_backward
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)

pytestmark = pytest.mark.usefixtures("one_thread")

K = 3  # micro-batches per step
WORDS = ["red circle", "blue square", "green triangle", "yellow circle", "red square", "blue triangle"]


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def accumulate(model, objective, micro, seed: int):
    model.zero_grad()
    torch.manual_seed(seed)
    total, _, _ = forward_backward(model, objective, micro, backward=lambda loss: loss.backward(),
                                   no_sync=lambda m: nullcontext())
    return total.detach(), gradients(model), torch.get_rng_state()


def one_large_batch(model, objective, micro, seed: int):
    """The model on each micro-batch in turn (the masks the cached pass draws), the loss once over all of them."""
    model.zero_grad()
    torch.manual_seed(seed)
    parts = [model(batch) for batch in micro]
    outputs = {k: v if v.ndim == 0 else torch.cat([p[k] for p in parts]) for k, v in parts[0].items()}
    total = objective(outputs, concat_batches(micro))[0]
    total.backward()
    return total.detach(), gradients(model), torch.get_rng_state()


def largest_relative_difference(a: dict, b: dict) -> float:
    return max(((a[n] - b[n]).abs().max() / b[n].abs().max().clamp_min(1e-30)).item() for n in b)


def assert_equal_gradients(accumulated, reference, rtol=1e-5):
    (total, grads, rng), (ref_total, ref_grads, ref_rng) = accumulated, reference
    assert grads.keys() == ref_grads.keys() and "logit_scale" in ref_grads
    difference = largest_relative_difference(grads, ref_grads)
    assert difference < rtol, f"accumulated gradients differ from one large batch by {difference:.3g} (relative)"
    torch.testing.assert_close(total, ref_total, rtol=rtol, atol=0)
    # The step consumed the draws of one forward per micro-batch and one loss: where the reference leaves the RNG.
    assert torch.equal(rng, ref_rng)


def image_text_batches(tokenizer, size: int, dtype=torch.float32) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    return [
        {"image": torch.randn(4, 3, size, size, generator=gen, dtype=dtype),
         "text": tokenizer([f"a {w} {i}" for w in WORDS[i:i + 4]]),
         "image_mask": torch.ones(4, dtype=torch.bool), "text_mask": torch.tensor([True, True, i == 0, True])}
        for i in range(K)
    ]


def test_accumulated_gradients_equal_one_large_batch():
    torch.manual_seed(0)
    model, _, tokenizer = create_model("tiny")
    objective = Objective([LossTermConfig(name="clip")])
    micro = image_text_batches(tokenizer, 64)

    whole = concat_batches(micro)
    model.zero_grad()
    reference_total = objective(model(whole), whole)[0]
    reference_total.backward()
    reference = gradients(model)

    model.zero_grad()
    total, _, _ = forward_backward(model, objective, micro, backward=lambda loss: loss.backward(),
                                   no_sync=lambda m: nullcontext())
    accumulated = gradients(model)
    torch.testing.assert_close(total, reference_total)
    assert reference.keys() == accumulated.keys() and "logit_scale" in reference
    for name in reference:
        torch.testing.assert_close(accumulated[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)

    # The naive alternative (mean of per-micro-batch losses) is measurably different: the test can tell.
    model.zero_grad()
    for batch in micro:
        (objective(model(batch), batch)[0] / len(micro)).backward()
    naive = gradients(model)
    assert not torch.allclose(naive["logit_scale"], reference["logit_scale"], rtol=1e-3)


def stochastic_image_text_model(randomness: dict):
    """A timm ViT image tower with the given dropout / drop-path rates and the tiny text tower, in float64."""
    torch.manual_seed(0)
    model, _, tokenizer = create_model({
        "embed_dim": 32,
        "towers": {
            "image": {"type": "timm_image", "model_name": "vit_tiny_patch16_224", "image_size": 32,
                      "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 4, "num_heads": 2,
                                 "mlp_ratio": 2.0, **randomness}},
            "text": {"type": "open_clip_text",
                     "cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}},
        },
    })
    return model.double().train(), tokenizer


@pytest.mark.parametrize("randomness", [{"drop_path_rate": 0.1}, {"proj_drop_rate": 0.1, "attn_drop_rate": 0.1}],
                         ids=["drop_path", "dropout"])
def test_accumulation_replays_the_towers_random_masks(randomness):
    model, tokenizer = stochastic_image_text_model(randomness)
    objective = Objective([LossTermConfig(name="clip")])
    micro = image_text_batches(tokenizer, 32, torch.float64)
    reference = one_large_batch(model, objective, micro, seed=5)
    assert_equal_gradients(accumulate(model, objective, micro, seed=5), reference)
    # The masks matter: another draw of them gives other gradients, so equality above is not vacuous.
    other = one_large_batch(model, objective, micro, seed=6)
    assert largest_relative_difference(other[1], reference[1]) > 1e-3


def dense_three_modality_model(dropout: float) -> MultimodalModel:
    torch.manual_seed(0)
    towers = {m: Tower(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 8)),
                       group_matcher={}) for m in ("image", "text", "audio")}
    return MultimodalModel(towers, logit_scale_init=2.0, logit_scale_max=100).double().train()


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no_dropout", "dropout"])
def test_symile_draws_its_negatives_once_per_step(dropout):
    model = dense_three_modality_model(dropout)
    objective = Objective([LossTermConfig(name="symile", options={"negative_sampling": "n"}),
                           LossTermConfig(name="clip", weight=0.5)])
    gen = torch.Generator().manual_seed(2)
    micro = [{**{m: torch.randn(4, 6, generator=gen, dtype=torch.float64) for m in ("image", "text", "audio")},
              "audio_mask": torch.tensor([True, i != 1, True, True])} for i in range(K)]
    reference = one_large_batch(model, objective, micro, seed=7)
    if dropout == 0.0:  # no randomness in the model: the reference is literally the model on the whole batch
        whole = concat_batches(micro)
        model.zero_grad()
        torch.manual_seed(7)
        objective(model(whole), whole)[0].backward()
        assert largest_relative_difference(gradients(model), reference[1]) < 1e-12
    assert_equal_gradients(accumulate(model, objective, micro, seed=7), reference)
    other = one_large_batch(model, objective, micro, seed=8)  # other permutations (and masks): other gradients
    assert largest_relative_difference(other[1], reference[1]) > 1e-3
