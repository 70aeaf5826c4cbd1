"""The schema of a pretraining config (the YAML files under configs/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmcl.config import Section
from mmcl.data import DataConfig
from mmcl.losses.objective import LossTermConfig
from mmcl.models import ModelConfig
from mmcl.optim import OptimConfig


class TrainLoopConfig(Section):
    """Length, precision, seeding and outputs of a run."""

    steps: int = Field(description="Optimiser steps to train for.", gt=0)
    seed: int = Field(0, description="Seed for weights, shuffling and augmentation.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Compute precision (mixed for bf16/fp16).")
    output_dir: str = Field("runs/default", description="Folder for the resolved config, metrics log and checkpoints.")
    log_every: int = Field(10, description="Write a metrics line every this many steps.", gt=0)
    checkpoint_every: int | None = Field(
        None, description="Save a checkpoint every this many steps (one is always saved at the end); null: end only."
    )


class PretrainConfig(Section):
    """A pretraining run: model, data, objective, optimiser and loop."""

    model: str | ModelConfig = Field(description="A built-in model name (see `mmcl models list`), a model YAML path, or an inline model config.")
    data: DataConfig = Field(description="Training data.")
    loss: list[LossTermConfig] = Field(
        default_factory=lambda: [LossTermConfig(name="clip")],
        description="Loss terms, each `{name, weight, options}`; the objective is their weighted sum.",
    )
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and learning-rate schedule.")
    train: TrainLoopConfig = Field(description="Length, precision, seeding and outputs.")
