"""Checks made before a training run starts, from its config alone: cross-section agreement and the inputs'
presence, needing neither decoded data nor a built model, so that a wrong config or a missing input fails at once,
before the run folder is made, and once in the launcher of `mmcl train --num-processes N` rather than in N
processes. Light to import: configs, the objective (torch), paths; not the tower libraries.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmcl.data.shards import expand_urls
from mmcl.errors import UserError
from mmcl.losses.objective import Objective
from mmcl.models.catalog import resolve_model_config
from mmcl.training import checkpoints, fsdp
from mmcl.training.config import PretrainConfig


def check_compatible(cfg: PretrainConfig) -> None:
    """Every check below, and the inputs' presence."""
    model_cfg = resolve_model_config(cfg.model)
    model_modalities = list(model_cfg.towers)
    missing = [m for m in cfg.data.modalities if m not in model_modalities]
    if missing:
        raise UserError(f"data.modalities lists {missing} but the model has towers only for {model_modalities}")
    check_trained_modalities(cfg)
    check_unmasked_steps(cfg.train.unmasked_steps, model_cfg)
    for task in cfg.eval.tasks if cfg.eval is not None else []:
        if not Path(task.data.path).exists():
            raise UserError(f"eval task {task.label}: data path {task.data.path} does not exist")
    if cfg.train.precision == "fp16" and not torch.cuda.is_available():
        # Accelerate would run fp16 on CPU as plain fp32, silently.
        raise UserError("train.precision=fp16 needs a GPU (loss-scaled fp16 is a GPU mode); on CPU use bf16 or fp32")
    if cfg.train.fsdp is not None:
        fsdp.require_gpu()
    checkpoint_dir = Path(cfg.train.output_dir) / "checkpoints"
    if cfg.train.resume is None and checkpoints.complete_checkpoints(checkpoint_dir):
        raise UserError(f"{checkpoint_dir} already holds checkpoints: continue with train.resume=latest "
                        "(or --resume latest|auto), or choose another train.output_dir")
    for source in cfg.data.shard_sources():
        expand_urls(source.shards)  # names a missing shard or a folder without any (URLs are checked when read)


def check_trained_modalities(cfg: PretrainConfig) -> None:
    """Every modality of data.modalities must be in some loss term: one that none uses is decoded and embedded
    for nothing, and its tower never learns."""
    objective = Objective(cfg.loss)
    used, described = set(), []
    for term, loss in zip(cfg.loss, objective.losses):
        # A loss names the modalities it compares; None (pairwise, the multi-view losses) means every modality the
        # model outputs, and a loss that does not say is taken to use them all too.
        named = getattr(loss, "modalities", None)
        used.update(cfg.data.modalities if named is None else named)
        described.append(f"{term.name} on {'-'.join(named) if named is not None else 'every modality'}")
    unused = [m for m in cfg.data.modalities if m not in used]
    if unused:
        listed = ", ".join(unused)
        pair = [unused[0], next((m for m in cfg.data.modalities if m != unused[0]), "text")]
        raise UserError(f"data.modalities lists {listed}, which no loss term uses ({'; '.join(described)}): its "
                        f"tower would train on nothing. Use a loss over every modality, e.g. 'loss=[{{name: "
                        f"pairwise}}]' (CLIP over every pair), or add a term on {listed}, e.g. {{name: clip, "
                        f"options: {{modalities: [{', '.join(pair)}]}}}}, or drop {listed} from data.modalities")
    # Second views (data.second_view) exist for the losses that read them (inmodal), and only for those.
    wanted = {m for loss in objective.losses for m in getattr(loss, "views", ())}
    have = set(cfg.data.second_view.modalities) if cfg.data.second_view is not None else set()
    if wanted - have:
        raise UserError(f"a loss term reads a second view of {sorted(wanted - have)}: set data.second_view with "
                        f"modalities: {sorted(wanted | have)}")
    if have - wanted:
        raise UserError(f"data.second_view lists {sorted(have - wanted)}, but no loss term reads a second view of "
                        f"it: it would be decoded and embedded for nothing (add a term such as {{name: inmodal, "
                        f"options: {{modalities: {sorted(have)}}}}}, or drop it from data.second_view)")


def check_unmasked_steps(unmasked_steps: int, model_cfg) -> None:
    """train.unmasked_steps ends patch dropout: a model without it is a config mistake, not a no-op."""
    if unmasked_steps and not any(getattr(t, "patch_dropout", 0) for t in model_cfg.towers.values()):
        raise UserError(f"train.unmasked_steps={unmasked_steps} turns patch dropout off for the last steps, but no "
                        "tower of the model sets patch_dropout")
