"""The schema of a pretraining config (the YAML files under configs/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mmcl.config import Section
from mmcl.data import DataConfig
from mmcl.eval import EvalConfig
from mmcl.losses.objective import LossTermConfig
from mmcl.models import ModelConfig
from mmcl.optim import OptimConfig
from mmcl.training.fsdp import FsdpConfig


class TrainLoopConfig(Section):
    """Length, precision, seeding and outputs of a run."""

    steps: int = Field(description="Optimiser steps to train for.", gt=0)
    accum_steps: int = Field(
        1, description="Micro-batches (of data.batch_size) per optimiser step; the loss sees the negatives of all "
        "of them, as one batch accum_steps times larger would.", ge=1,
    )
    seed: int = Field(0, description="Seed for weights, shuffling and augmentation.")
    cpu_threads: int | None = Field(
        None, description="Compute threads per process when training on CPU; null: the cores left to each process "
        "after its data.num_workers loader workers (at least 1), so compute and decoding do not fight for cores.",
        ge=1,
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Compute precision: fp32, or mixed bf16 / fp16 (fp16 with loss scaling, GPUs only); "
        "weights and optimiser state stay fp32."
    )
    fsdp: FsdpConfig | None = Field(
        None, description="Shard the model across processes with FSDP2 (GPU backends only; see the README); "
        "null: DDP, every process holding a full copy."
    )
    output_dir: str = Field("runs/default", description="Folder for the resolved config, metrics log and checkpoints.")
    log_every: int = Field(10, description="Write a metrics line every this many steps.", gt=0)
    trackers: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Accelerate trackers that receive every metrics line (metrics.jsonl is always written).",
    )
    checkpoint_every: int | None = Field(
        None, description="Save a checkpoint every this many steps (one is always saved at the end); null: end only.",
        gt=0,
    )
    keep_checkpoints: int = Field(3, description="How many of the newest checkpoints to keep.", ge=1)
    resume: str | None = Field(
        None, description="Continue a run: `latest` (newest checkpoint in output_dir), `auto` (the same, or a "
        "fresh start if there is none yet: for requeued jobs) or a checkpoint folder."
    )
    on_nonfinite: Literal["halt", "skip"] = Field(
        "halt", description="When the loss is NaN/inf: stop the run, or skip the step (weights stay untouched)."
    )
    max_skipped_steps: int = Field(
        10, description="With on_nonfinite=skip, halt after this many skipped steps in a row.", ge=1
    )


class PeriodicEvalConfig(EvalConfig):
    """Evaluation tasks run during training (every process embeds its share of the data), and which metric picks
    the best checkpoint."""

    every: int = Field(description="Evaluate every this many steps (and after the last step).", gt=0)
    best_metric: str | None = Field(
        None, description="`task-name/metric` (as in the metrics log, e.g. zeroshot_classification/eval/top1) whose "
        "best value's checkpoint is kept beside the last ones; null: keep only the last ones."
    )
    best_mode: Literal["max", "min"] = Field("max", description="Whether a higher or lower best_metric is better.")
    cache_gb: float = Field(
        4.0, description="Memory (GB per process) for keeping the decoded evaluation data between evaluations; "
        "a data set that does not fit is decoded again at every evaluation instead. 0: never keep it.", ge=0,
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
    eval: PeriodicEvalConfig | None = Field(None, description="Zero-shot evaluation during training; null: none.")
