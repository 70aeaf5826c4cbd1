"""Models for evaluation by name: a checkpoint folder (or a training run's folder: its best checkpoint, else its
latest), `open_clip:NAME` with a weights file, a model YAML (with the weights it names, such as an `open_clip:`
checkpoint), or a built-in config (randomly initialised: a baseline). What `mmcl eval`, `mmcl export`, the demo and
any script that scores a saved model use."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from mmcl.errors import UserError
from mmcl.models import create_model, list_models, load_model
from mmcl.training import checkpoints

log = logging.getLogger("mmcl.eval")

OPEN_CLIP_PREFIX = "open_clip:"
EMA = "ema"  # --weights value picking a training checkpoint's moving average (its ema/ folder)


def load_eval_model(spec: str, weights: str | None = None):
    """(model, transforms, tokenizer, description) from a checkpoint folder (a run folder: its best checkpoint,
    else its latest complete one), `open_clip:NAME` with `weights`, or a built-in model name (randomly initialised:
    a baseline)."""
    if spec.startswith(OPEN_CLIP_PREFIX):
        from mmcl.eval.openclip import load_open_clip

        if weights is None:
            raise UserError(f"{spec}: give the weights file with --weights FILE.safetensors")
        model, transforms, tokenizer = load_open_clip(spec[len(OPEN_CLIP_PREFIX):], weights)
        return model, transforms, tokenizer, {"source": spec, "weights": str(weights)}
    if weights not in (None, EMA):
        raise UserError(f"--weights FILE is only for open_clip:NAME models (a checkpoint folder holds its own "
                        f"weights); for a run or training checkpoint, --weights {EMA} picks its moving average")
    folder = checkpoints.resolve_alias(Path(spec))  # RUN/checkpoints/best where it is a pointer file
    if folder.is_dir():
        picked = checkpoints.run_checkpoint(folder)
        if picked is not None:  # a training run's folder
            folder, which = picked
            log.info("%s is a training run: evaluating its %s, %s", spec, which, folder)
        # The folder itself, not an alias: `best` moves on as training goes on, a result must say what it scored.
        description = {"source": str(spec), "checkpoint": str(folder.resolve())}
        part = EMA if weights == EMA else "model"  # a training checkpoint: step-N/model/ (and step-N/ema/)
        if (folder / part / "model.safetensors").is_file():
            folder = folder / part
            description["weights"] = "moving average (train.ema)" if part == EMA else "trained"
        elif weights == EMA:
            raise UserError(f"{folder} holds no moving average of the weights ({EMA}/): its run did not set train.ema")
        model, transforms, tokenizer = load_model(folder)
        return model, transforms, tokenizer, description
    is_yaml = Path(spec).suffix in (".yaml", ".yml") and Path(spec).is_file()
    if not is_yaml and spec not in list_models():
        raise UserError(f"{spec}: not a checkpoint folder, a model YAML, an open_clip:NAME or a built-in model "
                        f"({', '.join(list_models())})")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same baseline on every run
        model, transforms, tokenizer = create_model(spec)
    # A model YAML may name weights (a tower's `weights:`, an `open_clip:` checkpoint); what they leave is random.
    weights = "as the model config names them, else random (seed 0)" if is_yaml else "random initialisation, seed 0"
    return model, transforms, tokenizer, {"source": spec, "weights": weights}


def describe_model(model, description: dict) -> dict:
    return {**description, "modalities": list(model.modalities),
            "parameters": sum(p.numel() for p in model.parameters())}
