"""Models the benchmarks train with both mmcl and open_clip's own trainer, as open_clip model configs.

`tiny` is mmcl's built-in tiny model; `small` a model of more realistic proportions (9 M parameters: ViT on 112 px
images, patch 16, 4 blocks of width 192; text transformer of width 128, 4 blocks; embedding 128), on which
conclusions drawn from `tiny` (thread counts, what dominates a step) can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _tiny() -> dict:
    tiny = yaml.safe_load((ROOT / "mmcl" / "models" / "configs" / "tiny.yaml").read_text())
    return {"embed_dim": tiny["embed_dim"], "vision_cfg": tiny["towers"]["image"]["cfg"],
            "text_cfg": tiny["towers"]["text"]["cfg"]}


MODELS = {
    "tiny": _tiny(),
    "small": {"embed_dim": 128,
              "vision_cfg": {"image_size": 112, "patch_size": 16, "width": 192, "layers": 4, "head_width": 64},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4}},
}

# Runs open_clip_train.main with a model config file registered first (argv[1]); the rest is its command line.
OPEN_CLIP_ENTRY = """
import sys
import open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
main(sys.argv[2:])
"""


def open_clip_name(model: str) -> str:
    return f"mmcl-bench-{model}"


def register_open_clip(folder: Path, model: str) -> Path:
    """Writes `model`'s open_clip config file into `folder` and registers it in this process too; returns it."""
    path = folder / f"{open_clip_name(model)}.json"
    path.write_text(json.dumps(MODELS[model]))
    open_clip.add_model_config(path)
    return path


def mmcl_model_config(model: str) -> dict:
    """The same architecture as an mmcl model config (open_clip towers)."""
    spec = MODELS[model]
    return {"embed_dim": spec["embed_dim"], "towers": {
        "image": {"type": "open_clip_vision", "cfg": spec["vision_cfg"]},
        "text": {"type": "open_clip_text", "cfg": spec["text_cfg"]}}}


def write_mmcl_model_config(folder: Path, model: str) -> Path:
    path = folder / f"{open_clip_name(model)}.yaml"
    path.write_text(yaml.safe_dump(mmcl_model_config(model)))
    return path
