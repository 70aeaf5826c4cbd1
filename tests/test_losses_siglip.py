"""SigLIP: against open_clip, against a loop reference, chunked equals unchunked, masks."""

import pytest
import torch
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.errors import UserError
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_siglip(u, v, scale, bias):
    n = u.shape[0]
    out = 0.0
    for i in range(n):
        for j in range(n):
            label = 1.0 if i == j else -1.0
            z = label * (scale * torch.dot(u[i], v[j]) + bias)
            out = out - torch.log(1 / (1 + torch.exp(-z)))
    return out / n


def test_siglip_matches_open_clip():
    outputs = random_outputs(batch=16, dim=8, scale=10.0, bias=-5.0, dtype=torch.float32)
    ours = create_loss("siglip")
    theirs = OpenSigLipLoss()
    assert_same(lambda o: total(ours(o)),
                lambda o: theirs(o["image"], o["text"], o["logit_scale"], o["logit_bias"]),
                outputs, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("chunk_size", [3, 4, 100])
def test_siglip_chunked_matches_loop_reference(chunk_size):
    outputs = random_outputs(batch=10, scale=4.0, bias=-2.0)
    loss = create_loss("siglip", chunk_size=chunk_size)
    assert_same(lambda o: total(loss(o)),
                lambda o: reference_siglip(o["image"], o["text"], o["logit_scale"], o["logit_bias"]), outputs)


def test_siglip_masks_and_missing_bias():
    outputs = random_outputs(batch=8, scale=4.0, bias=-2.0)
    keep = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool)
    value, grads = value_and_grads(lambda o: total(create_loss("siglip", chunk_size=2)(o, {"text_mask": keep})), outputs)
    expected = reference_siglip(outputs["image"][keep], outputs["text"][keep], outputs["logit_scale"], outputs["logit_bias"])
    torch.testing.assert_close(value, expected.detach())
    assert grads["image"][~keep].abs().max() == 0
    with pytest.raises(UserError, match="logit_bias"):
        create_loss("siglip")(random_outputs(batch=4))
