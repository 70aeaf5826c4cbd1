"""open_clip models by config name, with weights from a local safetensors file, behind our model interface."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch.nn.functional as F
from torch import nn

from mmcl.errors import UserError
from mmcl.models import ModalityTransforms


class OpenClipModel(nn.Module):
    """`modalities` and `encode(modality, inputs)` (L2-normalised) over an open_clip CLIP model."""

    modalities = ["image", "text"]

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def encode(self, modality: str, inputs):
        features = self.clip.encode_image(inputs) if modality == "image" else self.clip.encode_text(inputs)
        return F.normalize(features, dim=-1)


def load_open_clip(name: str, weights: str | Path):
    """(model, ModalityTransforms, tokenizer) for open_clip config `name` with weights from `weights`."""
    if name not in open_clip.list_models():
        raise UserError(f"unknown open_clip model {name!r}; `python -c 'import open_clip; "
                        f"print(open_clip.list_models())'` lists them")
    weights = Path(weights)
    if not weights.is_file():
        raise UserError(f"{weights}: open_clip weights file not found")
    if weights.suffix != ".safetensors":
        raise UserError(f"{weights}: give weights as .safetensors; mmcl never unpickles checkpoint files")
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    except RuntimeError as err:  # load_state_dict's report of missing/unexpected keys
        raise UserError(f"{weights}: weights do not fit open_clip model {name}: {err}") from None
    return OpenClipModel(clip), ModalityTransforms(eval={"image": preprocess}), open_clip.get_tokenizer(name)
