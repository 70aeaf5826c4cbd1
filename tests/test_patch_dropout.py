"""Patch dropout (a tower's `patch_dropout`) and its unmasked last phase (`train.unmasked_steps`).

The reference is always the same architecture built without patch dropout, holding the same weights: training
with dropout feeds its transformer fewer tokens, evaluation is exactly the reference's.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mmcl.config import ConfigError, load_config, read_yaml
from mmcl.errors import UserError
from mmcl.models import create_model
from mmcl.models.catalog import CONFIG_DIR
from mmcl.training.config import PretrainConfig
from pipelines.cli import main as mmcl
from pipelines.pretrain import PretrainRecipe, train
from tests.train_fixtures import overrides, shape_shards

TINY = read_yaml(CONFIG_DIR / "tiny.yaml")
TINY_AUDIO = read_yaml(CONFIG_DIR / "tiny-audio.yaml")
TIMM_VIT = {"embed_dim": 32, "towers": {"image": {
    "type": "timm_image", "model_name": "vit_tiny_patch16_224", "image_size": 32,
    "kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}}}}


def with_patch_dropout(config: dict, modality: str, rate: float) -> dict:
    config = copy.deepcopy(config)
    config["towers"][modality]["patch_dropout"] = rate
    return config


def blocks(model, modality: str) -> torch.nn.Module:
    """The transformer blocks of a tower: what patch dropout thins out."""
    encoder = model.towers[modality].encoder
    trunk = getattr(encoder, "trunk", encoder)  # timm models sit in .trunk of the audio wrapper
    return trunk.transformer if hasattr(trunk, "transformer") else trunk.blocks


def tokens_seen(model, modality: str, inputs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the tower's output, the sequence length its transformer blocks received)."""
    seen = []
    hook = blocks(model, modality).register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    try:
        out = model.towers[modality](inputs)
    finally:
        hook.remove()
    (length,) = seen
    return out, length


# (model config, modality, patches per sample): open_clip's ViT, a timm ViT, the AST audio tower.
CASES = {
    "open_clip_vision": (TINY, "image", (64 // 8) ** 2),
    "timm_image": (TIMM_VIT, "image", (32 // 8) ** 2),
    "ast": (TINY_AUDIO, "audio", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_training_drops_patches_and_evaluation_is_the_model_without_it(case):
    config, modality, patches = CASES[case]
    torch.manual_seed(0)
    dropped, _, _ = create_model(with_patch_dropout(config, modality, 0.5))
    reference, _, _ = create_model(config)
    reference.load_state_dict(dropped.state_dict())  # strict: patch dropout adds no weights
    inputs = reference.towers[modality].example_input(4)

    reference.eval()
    full, full_length = tokens_seen(reference, modality, inputs)
    patches = patches or full_length - 1
    assert full_length == 1 + patches  # the class token and every patch

    dropped.eval()
    out, length = tokens_seen(dropped, modality, inputs)
    assert length == full_length and torch.equal(out, full)

    dropped.train()
    reference.train()  # these towers have no other randomness: training mode alone changes nothing here
    with torch.no_grad():
        out, length = tokens_seen(dropped, modality, inputs)
        full_train, _ = tokens_seen(reference, modality, inputs)
    assert torch.equal(full_train, full)
    assert length == 1 + patches // 2  # the class token and half of the patches
    assert not torch.allclose(out, full)


def test_a_tower_without_patches_is_an_error_naming_it():
    resnet = {"embed_dim": 32, "towers": {"image": {
        "type": "open_clip_vision", "patch_dropout": 0.5,
        "cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}}}}
    with pytest.raises(UserError, match=r"image tower: patch_dropout=0.5 needs a vision transformer .* ModifiedResNet"):
        create_model(resnet)
    cnn = {"embed_dim": 32, "towers": {"image": {"type": "timm_image", "model_name": "resnet18",
                                                 "patch_dropout": 0.25}}}
    with pytest.raises(UserError, match=r"image tower: patch_dropout=0.25 .* timm model 'resnet18' has none"):
        create_model(cnn)
    trunk = {"embed_dim": 32, "towers": {"image": {
        "type": "open_clip_vision", "patch_dropout": 0.25,
        "cfg": {"image_size": 32, "timm_model_name": "resnet18", "timm_pool": "avg", "timm_proj": "linear"}}}}
    with pytest.raises(UserError, match=r"image tower: patch_dropout=0.25 .* timm model 'resnet18' has none"):
        create_model(trunk)


def test_the_library_spellings_must_agree_with_patch_dropout():
    config = with_patch_dropout(TINY, "image", 0.5)
    config["towers"]["image"]["cfg"]["patch_dropout"] = 0.5  # the same value, as in a pasted model JSON: accepted
    model, _, _ = create_model(config)
    assert [m.prob for m in model.modules() if type(m).__name__ == "PatchDropout"] == [0.5]
    config["towers"]["image"]["cfg"]["patch_dropout"] = 0.75
    with pytest.raises(ConfigError, match=r"cfg.patch_dropout=0.75 disagrees with patch_dropout=0.5"):
        create_model(config)
    timm_config = copy.deepcopy(TIMM_VIT)
    timm_config["towers"]["image"]["kwargs"]["patch_drop_rate"] = 0.5
    with pytest.raises(ConfigError, match=r"kwargs.patch_drop_rate=0.5 disagrees with patch_dropout=0.0"):
        create_model(timm_config)
    with pytest.raises(ConfigError, match=r"towers.image.open_clip_vision.patch_dropout: .*less than 1"):
        create_model(with_patch_dropout(TINY, "image", 1.0))


# --- the unmasked phase, in `mmcl train`

STEPS = 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shape_shards(tmp_path_factory.mktemp("shards"), num_shards=1, per_shard=24)


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-patch-dropout.yaml"
    path.write_text(yaml.safe_dump(with_patch_dropout(TINY, "image", 0.5)))
    return path


class CountingRecipe(PretrainRecipe):
    """Records, for every training forward, how many tokens the image transformer received."""

    lengths: list[int] = []

    def setup_task(self) -> None:
        super().setup_task()
        blocks(self.model, "image").register_forward_pre_hook(
            lambda module, args: CountingRecipe.lengths.append(args[0].shape[1]) if module.training else None)


def run(shards, out, model, *extra) -> list[int]:
    """Image-transformer sequence lengths of each step of an in-process training run."""
    CountingRecipe.lengths = []
    cfg = load_config(PretrainConfig, "configs/demo.yaml", [
        *overrides(shards, out, **{"train.steps": STEPS, "train.checkpoint_every": 1, "train.keep_checkpoints": STEPS,
                                   "data.num_workers": 0, "model": str(model)}), *extra])
    train(cfg, CountingRecipe)
    return CountingRecipe.lengths


def resume_after(run_dir: Path, step: int, to: Path) -> Path:
    """A copy of a run cut back to its checkpoint of `step`, as a run killed after that step leaves it."""
    shutil.copytree(run_dir, to)
    for later in range(step + 1, STEPS + 1):
        shutil.rmtree(to / "checkpoints" / f"step-{later:08d}")
    return to


def test_the_last_unmasked_steps_train_without_patch_dropout_also_after_resume(shards, dropout_model, tmp_path):
    full, dropped = 1 + 64, 1 + 32
    unmasked = "train.unmasked_steps=1"
    assert run(shards, tmp_path / "run", dropout_model, unmasked) == [dropped, dropped, full]
    # Resumed inside the unmasked phase: the last step still trains on every patch.
    assert run(shards, resume_after(tmp_path / "run", 2, tmp_path / "late"), dropout_model, unmasked,
               "train.resume=latest") == [full]
    # Resumed before it: dropout until the phase starts.
    assert run(shards, resume_after(tmp_path / "run", 1, tmp_path / "early"), dropout_model, unmasked,
               "train.resume=latest") == [dropped, full]


def test_unmasked_steps_errors_name_the_key(shards, tmp_path, capsys):
    base = ["train", "configs/demo.yaml", *overrides(shards, tmp_path / "run", **{"train.steps": STEPS})]
    assert mmcl([*base, "train.unmasked_steps=2"]) == 2  # the tiny model has no patch dropout
    assert "train.unmasked_steps=2 turns patch dropout off for the last steps, but no tower of the model sets " \
           "patch_dropout" in capsys.readouterr().err
    assert mmcl([*base, f"train.unmasked_steps={STEPS}"]) == 2
    assert f"unmasked_steps={STEPS} must be less than steps={STEPS}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
