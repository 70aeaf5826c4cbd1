"""SigLIP: against open_clip, against a loop reference, chunked equals unchunked, masks."""

import numpy as np
import pytest
import torch
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from tests.losses_helpers import assert_same, random_outputs, total, value_and_grads
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)
from mmcl.errors import UserError
from mmcl.config import load_config, validate
from mmcl.losses import create_loss
from mmcl.losses.config import LossTermConfig
from mmcl.losses.objective import model_for_objective
from mmcl.models import create_model
from mmcl.models.factory import resolve_model_config
from mmcl.training.config import PretrainConfig

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


# open_clip_train/main.py with --siglip builds its model with these (the paper's Sec. 3.2 initialisation).
OPEN_CLIP_TRAIN_SIGLIP_INIT = {"logit_scale_init": np.log(10), "logit_bias_init": -10.0}


@pytest.mark.parametrize("loss,expected", [
    ([{"name": "siglip"}], OPEN_CLIP_TRAIN_SIGLIP_INIT),
    ([{"name": "clip"}], {"logit_scale_init": np.log(1 / 0.07), "logit_bias_init": None}),
    ([{"name": "clip"}, {"name": "siglip", "weight": 0.5}], OPEN_CLIP_TRAIN_SIGLIP_INIT),
])
def test_training_starts_from_the_objectives_temperature_and_bias(loss, expected, tmp_path):
    cfg = validate(PretrainConfig, {"model": "tiny", "data": {"train_shards": str(tmp_path)}, "loss": loss,
                                    "train": {"steps": 1, "output_dir": str(tmp_path / "run")}}, "test")
    model, _, _ = create_model(model_for_objective(resolve_model_config(cfg.model), cfg.loss))
    assert model.logit_scale.item() == pytest.approx(expected["logit_scale_init"])
    bias = None if model.logit_bias is None else model.logit_bias.item()
    assert bias == expected["logit_bias_init"]
    assert (model.config.logit_scale_init, model.config.logit_bias_init) == pytest.approx(
        (expected["logit_scale_init"], expected["logit_bias_init"]))  # written into every checkpoint's model.yaml


def test_a_model_that_sets_its_temperature_keeps_it():
    model = resolve_model_config("tiny").model_copy(update={"logit_scale_init": 1.5, "logit_bias_init": -3.0})
    chosen = model_for_objective(model, [LossTermConfig(name="siglip")])
    assert (chosen.logit_scale_init, chosen.logit_bias_init) == (1.5, -3.0)


def test_the_built_in_siglip_config_trains_from_the_papers_start(tmp_path):
    cfg = load_config(PretrainConfig, "configs/demo_siglip.yaml", [f"data.train_shards={tmp_path}"])
    resolved = model_for_objective(resolve_model_config(cfg.model), cfg.loss)
    assert (resolved.logit_scale_init, resolved.logit_bias_init) == pytest.approx(
        tuple(OPEN_CLIP_TRAIN_SIGLIP_INIT.values()))
