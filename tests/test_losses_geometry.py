"""Uniformity, alignment, CUA and CUAXU against loop references written from the formulas."""

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss
from tests.test_losses_clip import reference_clip

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_unif(x, y=None, t=2.0):
    y = x if y is None else y
    n = x.shape[0]
    terms = [torch.exp(-t * ((x[i] - y[j]) ** 2).sum()) for i in range(n) for j in range(n) if i != j]
    return torch.log(sum(terms) / len(terms))


def reference_align(u, v):
    return sum(((u[i] - v[i]) ** 2).sum() for i in range(u.shape[0])) / u.shape[0]


def test_uniformity_and_alignment():
    outputs = random_outputs(batch=7)
    unif = create_loss("uniformity", modalities=["text"], t=3.0)
    assert_same(lambda o: total(unif(o)), lambda o: reference_unif(o["text"], t=3.0), outputs)
    align = create_loss("alignment")
    assert_same(lambda o: total(align(o)), lambda o: reference_align(o["image"], o["text"]), outputs)


def test_cua_and_cuaxu_weights():
    outputs = random_outputs(batch=6)

    def reference(o, xu):
        u, v, s = o["image"], o["text"], o["logit_scale"]
        out = reference_clip(u, v, s) + 0.3 * reference_align(u, v) + 0.7 / 2 * (reference_unif(u) + reference_unif(v))
        return out + 2.0 * reference_unif(u, v) if xu else out

    cua = create_loss("cua", align_weight=0.3, uniformity_weight=0.7)
    assert set(cua(outputs)) == {"cua/clip", "cua/align", "cua/unif-image", "cua/unif-text"}
    assert_same(lambda o: total(cua(o)), lambda o: reference(o, False), outputs)
    cuaxu = create_loss("cuaxu", align_weight=0.3, uniformity_weight=0.7, cross_uniformity_weight=2.0)
    assert_same(lambda o: total(cuaxu(o)), lambda o: reference(o, True), outputs)


def test_uniformity_masks_use_rows_of_that_modality_only():
    outputs = random_outputs(batch=8)
    image_mask = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    text_mask = torch.tensor([1, 1, 1, 1, 1, 1, 0, 1], dtype=torch.bool)
    batch = {"image_mask": image_mask, "text_mask": text_mask}
    terms = create_loss("cuaxu")(outputs, batch)
    torch.testing.assert_close(terms["cuaxu/unif-image"], reference_unif(outputs["image"][image_mask]) / 2)
    torch.testing.assert_close(terms["cuaxu/unif-text"], reference_unif(outputs["text"][text_mask]) / 2)
    both = image_mask & text_mask
    torch.testing.assert_close(terms["cuaxu/xunif"], reference_unif(outputs["image"][both], outputs["text"][both]))
    _, grads = value_and_grads(lambda o: total(create_loss("cuaxu")(o, batch)), outputs)
    assert grads["image"][~image_mask].abs().max() == 0 and grads["text"][~text_mask].abs().max() == 0
