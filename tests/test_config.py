"""Typed configs: unknown keys, wrong types and missing fields fail naming the key and the file."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from mmcl.config import ConfigError, Section, load_config, parse_overrides, to_commented_yaml
from mmcl.models import ModelConfig
from mmcl.training.config import PretrainConfig

MINIMAL = """\
model: tiny
data:
  train_shards: shards/
train:
  steps: 10
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL)
    return path


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["optim.lr=1e-3", "data.batch_size=64", "data.modalities=[image, text]", "x.y.z=abc"]) == {
        "optim": {"lr": 0.001},
        "data": {"batch_size": 64, "modalities": ["image", "text"]},
        "x": {"y": {"z": "abc"}},
    }


def test_override_changes_resolved_value(config_file):
    cfg = load_config(PretrainConfig, config_file, ["optim.lr=2e-4", "data.batch_size=8"])
    assert cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.data.batch_size == 8
    assert cfg.train.steps == 10


def test_misspelled_override_names_key_file_and_suggestion(config_file):
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, config_file, ["optim.lrr=1"])
    message = str(err.value)
    assert "optim.lrr: unknown key" in message
    assert "did you mean optim.lr?" in message
    assert str(config_file) in message


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.stepz: unknown key"):
        load_config(PretrainConfig, path)


def test_wrong_type_and_missing_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: tiny\ndata:\n  train_shards: x\n  batch_size: many\ntrain: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, path)
    assert "data.batch_size: Input should be a valid integer" in str(err.value)
    assert "train.steps: required field is missing" in str(err.value)


def test_unknown_open_clip_tower_key_is_named():
    with pytest.raises(ConfigError, match="widht"):
        load_config(ModelConfig, None, ["embed_dim=8", "towers.image.type=open_clip_vision", "towers.image.cfg.widht=3"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(PretrainConfig, path)


def test_commented_yaml_round_trips(config_file, tmp_path):
    cfg = load_config(PretrainConfig, config_file, ["optim.lr=3e-4"])
    text = to_commented_yaml(cfg)
    assert "# Peak learning rate." in text
    again = tmp_path / "again.yaml"
    again.write_text(text)
    assert load_config(PretrainConfig, again) == cfg


def _sections(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, Section):
                _sections(arg, seen)


def _flatten(annotation) -> list:
    args = typing.get_args(annotation)
    return [annotation] if not args else [a for arg in args for a in _flatten(arg)]


def test_every_config_field_is_documented():
    seen: set = set()
    _sections(PretrainConfig, seen)
    _sections(ModelConfig, seen)
    assert len(seen) >= 8
    undocumented = [f"{m.__name__}.{name}" for m in seen for name, f in m.model_fields.items() if not f.description]
    assert undocumented == []
