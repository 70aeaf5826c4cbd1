"""CWCL against a loop reference written from the formula."""

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_cwcl(p, q, s):
    n = p.shape[0]
    w = [[((torch.dot(p[i], p[j]) + 1) / 2).detach() for j in range(n)] for i in range(n)]
    out = 0.0
    for x, y in ((p, q), (q, p)):
        for i in range(n):
            logits = [s * torch.dot(x[i], y[j]) for j in range(n)]
            log_norm = torch.log(sum(torch.exp(z) for z in logits))
            out = out - sum(w[i][j] * (logits[j] - log_norm) for j in range(n)) / sum(w[i])
    return out / n


def test_cwcl_matches_loop_reference():
    outputs = random_outputs(batch=6, modalities=("audio", "text"), scale=4.0)
    loss = create_loss("cwcl", modalities=["audio", "text"])
    assert_same(lambda o: total(loss(o)), lambda o: reference_cwcl(o["audio"], o["text"], o["logit_scale"]), outputs)


def test_cwcl_masks():
    outputs = random_outputs(batch=7, scale=4.0)
    keep = torch.tensor([1, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    value, grads = value_and_grads(lambda o: total(create_loss("cwcl")(o, {"image_mask": keep})), outputs)
    torch.testing.assert_close(value, reference_cwcl(outputs["image"][keep], outputs["text"][keep],
                                                     outputs["logit_scale"]).detach())
    assert grads["text"][~keep].abs().max() == 0
