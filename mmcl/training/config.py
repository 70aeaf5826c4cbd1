"""The schema of a pretraining config (the YAML files under configs/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmcl.config import Section
from mmcl.data import DataConfig
from mmcl.eval import EvalConfig
from mmcl.losses.config import LossTermConfig
from mmcl.models import ModelConfig
from mmcl.optim import OptimConfig


class FsdpConfig(Section):
    """Shard parameters, gradients and optimiser state across processes (GPU backends; see the README)."""

    reshard_after_forward: bool = Field(
        True, description="Free each block's gathered parameters after its forward and gather them again for the "
        "backward (least memory); false keeps them until the backward (faster, more memory)."
    )
    cpu_offload: bool = Field(
        False, description="Keep the sharded parameters, gradients and optimiser state in CPU memory between uses."
    )
    state_dict: Literal["sharded", "full"] = Field(
        "sharded", description="How train_state/ in checkpoints stores model and optimiser: one shard per process "
        "(fast, no gathering; resume with the same number of processes) or one full copy written by the main process."
    )
    wrap: list[str] | None = Field(
        None, description="Class names of the modules that become shard units; null: each tower's repeated blocks "
        "(the entries of a ModuleList/Sequential that repeat one composite class), listed in the log."
    )


class EmaConfig(Section):
    """An exponential moving average of the weights, kept beside the trained ones (timm's ModelEmaV3)."""

    decay: float = Field(0.9999, gt=0, lt=1, description="Weight of the average's old value at each update.")
    warmup: bool = Field(
        True, description="Ramp the decay up as 1 - (1 + n)^-warmup_power over the n updates so far (capped at "
        "decay), so that the first weights, still near their initialisation, are soon forgotten; false: the fixed "
        "decay from the first update (which copies the weights).")
    warmup_power: float = Field(0.75, gt=0, description="Power of the warm-up ramp: 3/4 reaches 0.999 after about "
                                "10k updates, 2/3 after about 32k (timm's guidance).")
    every: int = Field(1, ge=1, description="Update the average every this many optimiser steps.")


class TrainLoopConfig(Section):
    """Length, precision, seeding and outputs of a run."""

    steps: int = Field(description="Optimiser steps to train for.", gt=0)
    accum_steps: int = Field(
        1, description="Micro-batches (of data.batch_size) per optimiser step; the loss sees the negatives of all "
        "of them, as one batch accum_steps times larger would.", ge=1,
    )
    seed: int = Field(0, description="Seed for weights, shuffling and augmentation.")
    cpu_threads: int | None = Field(
        None, description="Compute threads per process when training on CPU; null: the process's share of the "
        "cores, less one per data.num_workers loader worker for light models (under 0.3 GFLOP per training sample, "
        "where decoding costs about what training does), all of it for heavier ones (measured: "
        "benchmarks/train_throughput.py).",
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
    ema: EmaConfig | None = Field(
        None, description="Keep an exponential moving average of the weights, saved in each checkpoint's ema/ "
        "folder (an mmcl checkpoint: `mmcl eval RUN --weights ema`, `mmcl export --weights ema`) and resumed "
        "exactly; null: none.")
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
    unmasked_steps: int = Field(
        0, ge=0,
        description="Train the last this many of `steps` without patch dropout (FLIP's unmasked tuning), so the "
        "model ends on the full token sequences evaluation uses; needs a tower with patch_dropout set. Which "
        "steps these are follows from the step number alone, so a resumed run switches at the same step.",
    )
    compile: bool = Field(
        False,
        description="torch.compile each tower in place (nn.Module.compile: checkpoints keep their keys and load "
        "with or without it). The first steps take longer while the towers compile. Only training compiles: "
        "evaluation during training runs the towers eagerly, since its varying batch sizes would recompile, "
        "and the training graphs then depend on the training batches alone (a resumed run compiles the graphs "
        "the uninterrupted one runs). Compiled kernels may add with atomics (on CPU with several threads: the "
        "token embedding's gradient), so a compiled run is bitwise reproducible only where its kernels are.",
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default",
        description="torch.compile mode with compile: true: reduce-overhead adds CUDA graphs (GPUs), the "
        "max-autotune modes search kernel configurations (slower to compile).",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.unmasked_steps >= self.steps:
            raise ValueError(f"unmasked_steps={self.unmasked_steps} must be less than steps={self.steps} "
                             "(some steps must train with patch dropout)")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile_mode={self.compile_mode!r} is only used with compile: true")
        if self.ema is not None and self.fsdp is not None:
            raise ValueError("ema with fsdp: the average would be a full, unsharded copy of the model on every "
                             "process; train without one of them")
        return self


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
    weights: Literal["model", "ema"] = Field(
        "model", description="Evaluate the trained weights, or their moving average (needs train.ema); best_metric "
        "then picks the checkpoint whose average scored best.")


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

    @model_validator(mode="after")
    def _ema_evaluation_needs_ema(self):
        if self.eval is not None and self.eval.weights == "ema" and self.train.ema is None:
            raise ValueError("eval.weights=ema evaluates the moving average of the weights: set train.ema too")
        return self
