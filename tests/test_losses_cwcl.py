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


def test_cwcl_reproduces_a_worked_example_done_by_hand():
    # Frozen p1 = (1, 0), p2 = (0, 1); trained q1 = (1, 0), q2 = (-1, 0); s = 1. Weights from the frozen tower:
    # w = [[1, 0.5], [0.5, 1]].
    # U->V, row 1: logits (1, -1), log-softmax (-0.12693, -2.12693) -> (1*0.12693 + 0.5*2.12693)/1.5 = 0.79360;
    #       row 2: logits (0, 0) -> ln 2 = 0.69315; mean 0.74337.
    # V->U, row 1: logits (1, 0), log-softmax (-0.31326, -1.31326) -> (0.31326 + 0.5*1.31326)/1.5 = 0.64659;
    #       row 2: logits (-1, 0), log-softmax (-1.31326, -0.31326) -> (0.5*1.31326 + 0.31326)/1.5 = 0.64659.
    # Sum of the two directions: 1.38996. (Weights from the trained tower in V->U would give 0.74337 + 0.31326.)
    outputs = {"image": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "text": torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
               "logit_scale": torch.tensor(1.0)}
    value = create_loss("cwcl", modalities=["image", "text"])(outputs)["cwcl/image-text"]
    assert abs(value.item() - 1.38996) < 1e-4
