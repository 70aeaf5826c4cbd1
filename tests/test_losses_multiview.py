"""MV-InfoNCE and MV-DHEL against loop references written from the paper's formulas; log-space stability."""

import math

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")

MODS = ("image", "text", "audio")


def e(s, x, y):
    return torch.exp(s * torch.dot(x, y))


def reference_mv_infonce(views, s):
    v, n = len(views), views[0].shape[0]
    out = 0.0
    for i in range(n):
        pos = sum(e(s, views[l][i], views[m][i]) for l in range(v) for m in range(v) if l != m)
        neg = sum(e(s, views[l][i], views[m][j]) for l in range(v) for m in range(v) for j in range(n)
                  if (m, j) != (l, i))
        out = out - torch.log(pos / neg)
    return out / n


def reference_mv_dhel(views, s):
    v, n = len(views), views[0].shape[0]
    out = 0.0
    for i in range(n):
        pos = sum(e(s, views[l][i], views[m][i]) for l in range(v) for m in range(l + 1, v))
        neg = 1.0
        for l in range(v):
            neg = neg * sum(e(s, views[l][i], views[l][j]) for j in range(n) if j != i)
        out = out - torch.log(pos / neg)
    return out / n


REFERENCES = {"mv_infonce": reference_mv_infonce, "mv_dhel": reference_mv_dhel}


@pytest.mark.parametrize("name", REFERENCES)
@pytest.mark.parametrize("mods", [MODS[:2], MODS])
def test_multiview_matches_loop_reference(name, mods):
    outputs = random_outputs(batch=5, modalities=mods, scale=3.0)
    loss = create_loss(name)  # default: every modality in the outputs
    assert set(loss(outputs)) == {f"{name}/{'-'.join(mods)}"}
    assert_same(lambda o: total(loss(o)), lambda o: REFERENCES[name]([o[m] for m in mods], o["logit_scale"]), outputs)


@pytest.mark.parametrize("name", REFERENCES)
def test_multiview_is_stable_where_raw_sums_overflow(name):
    outputs64 = random_outputs(batch=6, modalities=MODS, scale=100.0)
    outputs32 = {k: v.detach().float() for k, v in outputs64.items()}
    if name == "mv_dhel":
        naive = REFERENCES[name]([outputs32[m] for m in MODS], outputs32["logit_scale"])
        assert not math.isfinite(naive.item())  # the product over views of raw sums overflows float32
    ours = total(create_loss(name)(outputs32))
    assert math.isfinite(ours.item())
    torch.testing.assert_close(ours.double(), total(create_loss(name)(outputs64)).detach(), rtol=1e-5, atol=1e-4)


def test_multiview_masks():
    outputs = random_outputs(batch=7, modalities=MODS, scale=3.0)
    keep = torch.tensor([1, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    loss = create_loss("mv_dhel", modalities=list(MODS))
    value, grads = value_and_grads(lambda o: total(loss(o, {"text_mask": keep})), outputs)
    expected = reference_mv_dhel([outputs[m][keep] for m in MODS], outputs["logit_scale"])
    torch.testing.assert_close(value, expected.detach())
    assert grads["audio"][~keep].abs().max() == 0
