"""DCL and DCLW against a loop reference written from the formulas."""

import math

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.errors import UserError
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_dcl(u, v, scale, sigma=None, within=True):
    """Yeh et al. 2022, Eq. (6), transcribed with loops: for anchor x_i (x one view, y the other) the negatives are
    every j ≠ i of both views, in one log-sum; w_i the negative von Mises-Fisher weight (Sec. 4.2)."""
    n = u.shape[0]
    if sigma is None:
        weights = [1.0] * n
    else:
        pos = [torch.dot(u[k], v[k]).item() for k in range(n)]
        norm = sum(math.exp(p / sigma) for p in pos)
        weights = [2 - n * math.exp(p / sigma) / norm for p in pos]
    out = 0.0
    for x, y in ((u, v), (v, u)):
        for i in range(n):
            views = (x, y) if within else (y,)
            negatives = sum(torch.exp(scale * torch.dot(x[i], view[j])) for view in views for j in range(n) if j != i)
            out = out - weights[i] * scale * torch.dot(x[i], y[i]) + torch.log(negatives)
    return out / (2 * n)


@pytest.mark.parametrize("name,sigma", [("dcl", None), ("dclw", 0.5), ("dclw", 0.2)])
@pytest.mark.parametrize("negatives", ["within_and_cross", "cross_modal"])
def test_dcl_matches_loop_reference(name, sigma, negatives):
    outputs = random_outputs(batch=7, scale=3.0)
    options = {"negatives": negatives} | ({} if sigma is None or sigma == 0.5 else {"sigma": sigma})
    loss = create_loss(name, **options)
    assert_same(lambda o: total(loss(o)),
                lambda o: reference_dcl(o["image"], o["text"], o["logit_scale"], sigma, negatives == "within_and_cross"),
                outputs)


def test_the_default_is_the_papers_equation_with_within_modality_negatives():
    """The case the review found: 16 rows at scale 10, where cross-modal-only negatives give a smaller loss."""
    outputs = random_outputs(batch=16, scale=10.0)
    paper = reference_dcl(outputs["image"], outputs["text"], outputs["logit_scale"])
    cross_only = reference_dcl(outputs["image"], outputs["text"], outputs["logit_scale"], within=False)
    got = total(create_loss("dcl")(outputs))
    torch.testing.assert_close(got, paper)
    assert paper - cross_only > 0.1


def test_unknown_negatives_option_is_refused():
    with pytest.raises(UserError, match="negatives must be one of within_and_cross, cross_modal"):
        create_loss("dcl", negatives="within")


def test_dcl_masks():
    outputs = random_outputs(batch=8, scale=3.0)
    keep = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    value, grads = value_and_grads(lambda o: total(create_loss("dclw")(o, {"image_mask": keep})), outputs)
    expected = reference_dcl(outputs["image"][keep], outputs["text"][keep], outputs["logit_scale"], 0.5)
    torch.testing.assert_close(value, expected.detach())
    assert grads["text"][~keep].abs().max() == 0
