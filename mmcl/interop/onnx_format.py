"""mmcl models as ONNX: one file per tower plus `onnx_model.json`, for ONNX runtimes that have no torch.

Each `<modality>.onnx` maps a batch of the tower's input (any batch size) to unit-length embeddings, the L2
normalisation included, so a runtime's output is directly comparable across modalities (cosine = dot product).
Inputs are what the tower's evaluation transform produces; `onnx_model.json` says how to make them:

* image: float32 [B, 3, S, S]; RGB, shorter side resized to S (bicubic), centre-cropped, /255, then (x − mean)/std.
* text: int64 [B, L] token ids; open_clip's BPE tokenizer with context length L (`open_clip.get_tokenizer` or
  `SimpleTokenizer(context_length=L)`), or, for a Hugging Face text tower, its tokenizer files copied beside the
  model (`<modality>_tokenizer/`), padded to L.
* audio: float32 [B, 1, n_mels, frames]: the log-mel front end (mono, resampled to the rate, cropped or
  repeat-padded to the clip length, power mel spectrogram with the given n_fft, hop, mels and band edges, in dB);
  the fixed dB normalisation is inside the ONNX graph.

Export goes through `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript), with the batch
dimension dynamic.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.errors import UserError

METADATA = "onnx_model.json"


class Embedder(nn.Module):
    """A tower followed by the L2 normalisation that makes its output an embedding."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower(inputs), dim=-1)


def preprocessing(modality: str, tower_cfg, tower) -> dict:
    """What the ONNX input of `modality` is and how to compute it from raw data."""
    kind = tower_cfg.type
    if kind in ("open_clip_vision", "timm_image"):
        transform = tower.eval_transform.transforms
        normalize = transform[-1]
        return {"kind": "image", "size": tower.input_shape[-1], "interpolation": "bicubic", "resize": "shorter side",
                "crop": "centre", "scale": 1 / 255, "mean": list(normalize.mean), "std": list(normalize.std)}
    if kind == "open_clip_text":
        return {"kind": "text", "tokenizer": "open_clip BPE (open_clip.get_tokenizer / SimpleTokenizer)",
                "context_length": tower_cfg.context_length}
    if kind == "hf_text":
        return {"kind": "text", "tokenizer": f"Hugging Face, files in {modality}_tokenizer/",
                "context_length": tower_cfg.context_length, "padding": "max_length"}
    if kind in ("ast", "audio_cnn"):
        front_end = tower_cfg.front_end
        return {"kind": "audio", "front_end": {k: getattr(front_end, k) for k in (
            "sample_rate", "clip_seconds", "n_fft", "hop_length", "n_mels", "f_min", "f_max")},
            "normalisation": "inside the graph: (dB - mean) / std", "norm": tower_cfg.norm.model_dump()}
    raise UserError(f"{modality} tower of type {kind!r}: no ONNX input description for it")


def example_input(modality: str, tower, batch: int) -> torch.Tensor:
    if tower.tokenizer is not None:
        return tower.tokenizer([f"a photo of {i} red circles" for i in range(batch)])
    return torch.randn(batch, *tower.input_shape)


def export_onnx(model, output: Path) -> Path:
    """Write one ONNX file per tower of `model` and the metadata JSON into `output`; returns it."""
    output.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    towers = {}
    for modality, tower in model.towers.items():
        tower_cfg = model.config.towers[modality]
        described = preprocessing(modality, tower_cfg, tower)
        example = example_input(modality, tower, batch=2)
        torch.onnx.export(Embedder(tower).eval(), (example,), output / f"{modality}.onnx", input_names=["input"],
                          output_names=["unit_embedding"], dynamic_shapes={"inputs": {0: torch.export.Dim("batch")}},
                          dynamo=True, verbose=False)
        if tower_cfg.type == "hf_text":
            tower.tokenizer.save_pretrained(output / f"{modality}_tokenizer")
        towers[modality] = {"file": f"{modality}.onnx", "input": {"name": "input", "dtype": str(example.dtype)
                            .removeprefix("torch."), "shape": ["batch", *example.shape[1:]]},
                            "output": {"name": "unit_embedding", "shape": ["batch", model.config.embed_dim],
                                       "unit_length": True},
                            "preprocessing": described}
    scale = model.logit_scale[0].clamp(max=model.log_scale_max).exp().item()  # as the model's forward applies it
    metadata = {"embed_dim": model.config.embed_dim, "logit_scale": scale,
                "logit_bias": model.logit_bias.item() if model.logit_bias is not None else None, "towers": towers}
    (output / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return output
