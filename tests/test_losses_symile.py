"""Symile against loop references (both negative-sampling schemes), reduction to CLIP, masks."""

import itertools

import pytest
import torch

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from tests.test_losses_clip import reference_clip
from mmcl.errors import UserError
from mmcl.losses import create_loss

pytestmark = pytest.mark.usefixtures("one_thread")

MODS = ("image", "text", "audio")


def mip(*vectors):
    out = vectors[0]
    for v in vectors[1:]:
        out = out * v
    return out.sum()


def cross_entropy(logits, target):
    return -(logits[target] - torch.log(sum(torch.exp(z) for z in logits)))


def reference_symile(reps, scale, sampling, seed=0):
    """reps: list of [n, d]. For "n", permutations are drawn per anchor, per other modality, in list order."""
    torch.manual_seed(seed)
    n, m = reps[0].shape[0], len(reps)
    out = 0.0
    for a in range(m):
        others = [reps[o] for o in range(m) if o != a]
        if sampling == "n":
            perms = [torch.randperm(n) for _ in others]
            for i in range(n):
                logits = [scale * (mip(reps[a][i], *[r[i] for r in others]) if j == i else
                                   mip(reps[a][i], *[r[p[j]] for r, p in zip(others, perms)])) for j in range(n)]
                out = out + cross_entropy(logits, i)
        else:
            combos = list(itertools.product(range(n), repeat=len(others)))
            for i in range(n):
                logits = [scale * mip(reps[a][i], *[r[j] for r, j in zip(others, combo)]) for combo in combos]
                out = out + cross_entropy(logits, combos.index((i,) * len(others)))
    return out / (m * n)


@pytest.mark.parametrize("sampling", ["n", "n_squared"])
def test_symile_matches_loop_reference(sampling):
    outputs = random_outputs(batch=5, dim=4, modalities=MODS, scale=6.0)
    loss = create_loss("symile", negative_sampling=sampling)

    def ours(o):
        torch.manual_seed(0)
        return total(loss(o))

    assert_same(ours, lambda o: reference_symile([o[m] for m in MODS], o["logit_scale"], sampling), outputs)


def test_symile_four_modalities_n_squared():
    mods = MODS + ("depth",)
    outputs = random_outputs(batch=3, dim=4, modalities=mods, scale=6.0)
    loss = create_loss("symile", modalities=list(mods), negative_sampling="n_squared")
    assert_same(lambda o: total(loss(o)), lambda o: reference_symile([o[m] for m in mods], o["logit_scale"], "n_squared"),
                outputs)


@pytest.mark.parametrize("options", [{"negative_sampling": "n_squared"}, {}])
def test_symile_of_two_modalities_is_clip(options):
    """Two modalities default to n_squared, where Symile is CLIP's InfoNCE."""
    outputs = random_outputs(batch=6, scale=4.0)
    loss = create_loss("symile", modalities=["image", "text"], **options)
    assert_same(lambda o: total(loss(o)), lambda o: reference_clip(o["image"], o["text"], o["logit_scale"]), outputs)


def test_symile_of_two_modalities_refuses_n_sampling():
    """One permutation of two modalities is a bijection: the positive would be a negative in almost every row."""
    with pytest.raises(UserError, match="needs three or more modalities"):
        create_loss("symile", modalities=["image", "text"], negative_sampling="n")


def test_symile_excludes_incomplete_rows():
    outputs = random_outputs(batch=7, dim=4, modalities=MODS, scale=6.0)
    keep = torch.tensor([1, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    loss = create_loss("symile", negative_sampling="n_squared")
    value, grads = value_and_grads(lambda o: total(loss(o, {"audio_mask": keep})), outputs)
    expected = reference_symile([outputs[m][keep] for m in MODS], outputs["logit_scale"], "n_squared")
    torch.testing.assert_close(value, expected.detach())
    assert grads["image"][~keep].abs().max() == 0
    with pytest.raises(UserError, match="negative_sampling"):
        create_loss("symile", negative_sampling="all")
