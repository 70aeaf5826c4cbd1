"""Every registered loss on degenerate batches: no rows with the modalities, one row, float32 features."""

import math

import pytest
import torch

from tests.losses_helpers import random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.losses import create_loss, list_losses

pytestmark = pytest.mark.usefixtures("one_thread")

MODS = ("image", "text", "audio")
VIEWS = ("image_view", "text_view")  # second views, read by in-modal losses and passed over by the others


@pytest.mark.parametrize("name", list_losses())
@pytest.mark.parametrize("present", [0, 1, 2])
def test_loss_is_finite_with_few_rows(name, present):
    outputs = random_outputs(batch=5, modalities=MODS + VIEWS, scale=10.0, bias=-3.0, dtype=torch.float32)
    mask = torch.arange(5) < present
    batch = {f"{m}_mask": mask for m in MODS + VIEWS}
    value, grads = value_and_grads(lambda o: total(create_loss(name)(o, batch)), outputs)
    assert math.isfinite(value.item()), value
    if present == 0:
        assert value.item() == 0
    for key, grad in grads.items():
        assert torch.isfinite(grad).all(), key
        if grad.dim() == 2:
            assert grad[~mask].abs().max() == 0, key
