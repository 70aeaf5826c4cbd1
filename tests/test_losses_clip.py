"""CLIP and pairwise losses: against open_clip, against a loop reference, masks, registry and objective."""

import math

import pytest
import torch
from open_clip.loss import ClipLoss as OpenClipLoss

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.errors import UserError
from mmcl.losses import create_loss, list_losses
from mmcl.losses.objective import LossTermConfig, Objective

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_clip(u, v, scale):
    """Slow loop: mean over rows and both directions of -log softmax of the positive."""
    n = u.shape[0]
    out = 0.0
    for x, y in ((u, v), (v, u)):
        for i in range(n):
            logits = [scale * torch.dot(x[i], y[j]) for j in range(n)]
            out = out - (logits[i] - torch.log(sum(torch.exp(z) for z in logits)))
    return out / (2 * n)


def test_clip_matches_open_clip_forward_and_backward():
    outputs = random_outputs(batch=16, dim=8, scale=20.0, dtype=torch.float32)
    ours = create_loss("clip")
    theirs = OpenClipLoss()
    assert_same(
        lambda o: total(ours(o)),
        lambda o: theirs(o["image"], o["text"], o["logit_scale"]),
        outputs,
        atol=1e-6,
        rtol=0,
    )


def test_clip_matches_loop_reference_any_pair():
    outputs = random_outputs(batch=7, modalities=("audio", "text"), scale=3.0)
    loss = create_loss("clip", modalities=["audio", "text"])
    assert set(loss(outputs)) == {"clip/audio-text"}
    assert_same(lambda o: total(loss(o)), lambda o: reference_clip(o["audio"], o["text"], o["logit_scale"]), outputs)


def test_clip_masks_select_rows_and_zero_their_gradient():
    outputs = random_outputs(batch=9)
    batch = {"image_mask": torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool),
             "text_mask": torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1], dtype=torch.bool)}
    keep = batch["image_mask"] & batch["text_mask"]
    loss = create_loss("clip")
    value, grads = value_and_grads(lambda o: total(loss(o, batch)), outputs)
    expected = reference_clip(outputs["image"][keep], outputs["text"][keep], outputs["logit_scale"])
    torch.testing.assert_close(value, expected.detach())
    assert grads["image"][~keep].abs().max() == 0 and grads["text"][~keep].abs().max() == 0
    assert grads["image"][keep].abs().max() > 0


def test_pairwise_all_pairs_and_anchor():
    mods = ("image", "text", "audio")
    outputs = random_outputs(batch=6, modalities=mods)
    all_pairs = create_loss("pairwise")(outputs)
    assert set(all_pairs) == {"pairwise/image-text", "pairwise/image-audio", "pairwise/text-audio"}
    anchored = create_loss("pairwise", anchor="image")(outputs)
    assert set(anchored) == {"pairwise/image-text", "pairwise/image-audio"}
    ref = reference_clip(outputs["text"], outputs["audio"], outputs["logit_scale"])
    torch.testing.assert_close(all_pairs["pairwise/text-audio"], ref)


def test_registry_lists_every_contract_name():
    expected = {"clip", "siglip", "cua", "cuaxu", "dcl", "dclw", "pairwise", "symile", "mv_infonce", "mv_dhel",
                "cwcl", "uniformity", "alignment"}
    assert expected <= set(list_losses())


def test_unknown_name_and_option_are_user_errors():
    with pytest.raises(UserError, match="'clpi'.*did you mean 'clip'.*valid losses: .*siglip"):
        create_loss("clpi")
    with pytest.raises(UserError, match="clip.*temprature.*valid options: modalities"):
        create_loss("clip", temprature=0.1)
    with pytest.raises(UserError, match="exactly 2"):
        create_loss("clip", modalities=["image"])
    with pytest.raises(UserError, match="unknown loss 'nope'"):
        Objective([LossTermConfig(name="nope")])


def test_objective_weighted_total_and_unweighted_terms():
    outputs = random_outputs(batch=5, modalities=("image", "text", "audio"))
    terms = [LossTermConfig(name="clip", weight=0.5),
             LossTermConfig(name="clip", weight=2.0, options={"modalities": ["audio", "text"]})]
    total_value, logged = Objective(terms)(outputs)
    a = reference_clip(outputs["image"], outputs["text"], outputs["logit_scale"])
    b = reference_clip(outputs["audio"], outputs["text"], outputs["logit_scale"])
    torch.testing.assert_close(logged["clip/image-text"], a)
    torch.testing.assert_close(logged["clip/audio-text"], b)
    torch.testing.assert_close(total_value, 0.5 * a + 2.0 * b)
    assert math.isfinite(total_value.item())


def test_objective_config_forbids_unknown_keys():
    with pytest.raises(Exception, match="wieght"):
        LossTermConfig.model_validate({"name": "clip", "wieght": 2})


def test_objective_computes_in_float32_under_autocast():
    outputs = random_outputs(batch=64, dim=16, scale=100.0, dtype=torch.float32)
    half = {k: v.detach().bfloat16() for k, v in outputs.items()}
    upcast = {k: v.float() for k, v in half.items()}
    objective = Objective([LossTermConfig(name="clip")])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total_value, _ = objective(half)
    assert total_value.dtype == torch.float32
    torch.testing.assert_close(total_value, reference_clip(upcast["image"], upcast["text"], upcast["logit_scale"]),
                               atol=1e-5, rtol=1e-5)
