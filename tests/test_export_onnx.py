"""`mmcl export --format onnx`: onnxruntime gives PyTorch's embeddings on real inputs, at any batch size."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from mmcl.models import save_model
from pipelines.cli import main as mmcl
from tests.test_export_open_clip import trained_like


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model, transforms, tokenizer = trained_like("tiny-audio")
    save_model(model, folder / "checkpoint")
    assert mmcl(["export", str(folder / "checkpoint"), "--format", "onnx", "--output", str(folder / "out")]) == 0
    return folder / "out", model, transforms, tokenizer


def real_inputs(transforms, tokenizer) -> dict[str, torch.Tensor]:
    """Three of each, through the evaluation transforms: a photo, captions, a tone with noise."""
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (70 + 9 * i, 90, 3), dtype=np.uint8)) for i in range(3)]
    t = np.arange(16000 * 3) / 16000
    clips = [(0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
             for f in (220.0, 440.0, 880.0)]
    return {"image": torch.stack([transforms.eval["image"](p) for p in photos]),
            "text": tokenizer(["a red circle", "two green squares on a long table", "a dog barks at night"]),
            "audio": torch.stack([transforms.eval["audio"](torch.from_numpy(c)[None], 16000) for c in clips])}


def test_onnxruntime_embeddings_equal_pytorchs(exported):
    folder, model, transforms, tokenizer = exported
    inputs = real_inputs(transforms, tokenizer)
    for modality, batch in inputs.items():
        session = onnxruntime.InferenceSession(str(folder / f"{modality}.onnx"))
        got = session.run(["unit_embedding"], {"input": batch.numpy()})[0]  # batch 3; exported with an example of 2
        with torch.no_grad():
            expected = model.encode(modality, batch).numpy()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4, modality


def test_the_metadata_says_how_to_make_each_input(exported):
    folder, model, _, _ = exported
    metadata = json.loads((folder / "onnx_model.json").read_text())
    towers = metadata["towers"]
    assert set(towers) == {"image", "text", "audio"}
    assert towers["image"]["preprocessing"]["size"] == model.config.towers["image"].image_size
    assert towers["text"]["input"] == {"name": "input", "dtype": "int64", "shape": ["batch", 32]}
    assert towers["audio"]["preprocessing"]["front_end"]["n_mels"] == 64
    assert metadata["logit_scale"] == pytest.approx(model.logit_scale.exp().item())
