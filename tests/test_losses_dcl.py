"""DCL and DCLW against a loop reference written from the formulas."""

import math

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_dcl(u, v, scale, sigma=None):
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
            negatives = sum(torch.exp(scale * torch.dot(x[i], y[j])) for j in range(n) if j != i)
            out = out - weights[i] * scale * torch.dot(x[i], y[i]) + torch.log(negatives)
    return out / (2 * n)


@pytest.mark.parametrize("name,sigma", [("dcl", None), ("dclw", 0.5), ("dclw", 0.2)])
def test_dcl_matches_loop_reference(name, sigma):
    outputs = random_outputs(batch=7, scale=3.0)
    options = {} if sigma is None or sigma == 0.5 else {"sigma": sigma}
    loss = create_loss(name, **options)
    assert_same(lambda o: total(loss(o)), lambda o: reference_dcl(o["image"], o["text"], o["logit_scale"], sigma),
                outputs)


def test_dcl_masks():
    outputs = random_outputs(batch=8, scale=3.0)
    keep = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    value, grads = value_and_grads(lambda o: total(create_loss("dclw")(o, {"image_mask": keep})), outputs)
    expected = reference_dcl(outputs["image"][keep], outputs["text"][keep], outputs["logit_scale"], 0.5)
    torch.testing.assert_close(value, expected.detach())
    assert grads["text"][~keep].abs().max() == 0
