"""`mmcl export CHECKPOINT --interpolate BASE --alpha A` (WiSE-FT): the weights (1 - A) * BASE + A * CHECKPOINT."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mmcl.models import save_model
from pipelines.cli import main as mmcl
from tests.test_export_open_clip import trained_like


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wise")
    base, _, _ = trained_like("tiny")
    tuned, _, _ = trained_like("tiny")
    with torch.no_grad():  # a different point in the same architecture
        for param in tuned.parameters():
            param.mul_(1.5).add_(0.1)
    return save_model(base, folder / "base"), save_model(tuned, folder / "tuned")


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_the_exported_weights_are_the_weighted_mean(two_checkpoints, tmp_path, alpha):
    base, tuned = two_checkpoints
    assert mmcl(["export", str(tuned), "--interpolate", str(base), "--alpha", str(alpha), "--format", "mmcl",
                 "--output", str(tmp_path / "wise")]) == 0
    got = load_file(tmp_path / "wise" / "model.safetensors")
    a, b = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    assert got.keys() == b.keys()
    for name in b:
        expected = a[name] if alpha == 0 else b[name] if alpha == 1 else 0.75 * a[name] + 0.25 * b[name]
        torch.testing.assert_close(got[name], expected, rtol=0, atol=1e-6, msg=name)


def test_other_architectures_and_bad_weights_are_refused(two_checkpoints, tmp_path, capsys):
    base, tuned = two_checkpoints
    other, _, _ = trained_like("tiny-audio")
    save_model(other, tmp_path / "other")
    out = ["--format", "mmcl", "--output", str(tmp_path / "o")]
    assert mmcl(["export", str(tuned), "--interpolate", str(tmp_path / "other"), *out]) == 2
    assert "another architecture than the fine-tuned checkpoint (model config differs in towers)" in capsys.readouterr().err
    assert mmcl(["export", str(tuned), "--interpolate", str(base), "--alpha", "1.5", *out]) == 2
    assert "must be in [0, 1]" in capsys.readouterr().err
    assert mmcl(["export", str(tuned), "--alpha", "0.5", *out]) == 2
    assert "give --interpolate BASE too" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
