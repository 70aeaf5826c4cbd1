"""Pretraining recipe: read it top to bottom to know what a run does.

    mmcl train configs/demo.yaml optim.lr=1e-3                      # one process
    mmcl train --num-processes 2 configs/demo.yaml                  # two local processes (torchrun)
    accelerate launch --multi_gpu --num_processes 2 -m pipelines.pretrain configs/demo.yaml
    torchrun --nproc_per_node 2 -m pipelines.pretrain configs/demo.yaml

setup (accelerator, task, optimiser, data stream, checkpoints and resume) ▶ loop: accum_steps micro-batches ▶
the task's forward/backward (agreed non-finite check first) ▶ clip ▶ step ▶ metrics line ▶ evaluation ▶ checkpoint ▶
summary ▶ cleanup. The pieces live in mmcl/training/.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mmcl.config import load_config, save_config
from mmcl.data import build_loader
from mmcl.errors import UserError
from mmcl.losses.objective import Objective, model_for_objective
from mmcl.models import create_model
from mmcl.models.factory import resolve_model_config
from mmcl.models.patch_dropout import PatchDropoutSchedule
from mmcl.optim import build_optimizer, build_scheduler
from mmcl.training import fsdp
from mmcl.training.accumulation import concat_batches
from mmcl.training.checkpoint_manager import CheckpointManager
from mmcl.training.compile import compile_towers
from mmcl.training.console import DataWaitWatch, eval_line, summary
from mmcl.training.data_stream import DataStream
from mmcl.training.ema import WeightAverage
from mmcl.training.launch import default_cpu_threads
from mmcl.training.metrics import MetricsLogger, batch_geometry, log_start, tracker_hparams
from mmcl.training.nonfinite import NonFiniteGuard
from mmcl.training.periodic_eval import PeriodicEvaluator
from mmcl.training.preflight import check_compatible
from mmcl.training.run_folder import interrupted, set_aside_previous_attempt
from mmcl.training.task import ContrastiveTask
from mmcl.training.config import PretrainConfig

log = logging.getLogger("mmcl.train")

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class PretrainRecipe:
    """setup (accelerator ▶ task ▶ optimiser ▶ data ▶ checkpoints, resume) ▶ train ▶ cleanup. The `build_*` methods
    are what a variant (or a test) replaces."""

    def __init__(self, cfg: PretrainConfig):
        self.cfg = cfg
        self.out_dir = Path(cfg.train.output_dir)
        self.threads_before = torch.get_num_threads()

    # --- builders
    def build_accelerator(self, model) -> Accelerator:
        # Without cpu=True Accelerate treats CPU processes under torchrun/accelerate launch as independent runs.
        return Accelerator(mixed_precision=PRECISION[self.cfg.train.precision], cpu=not torch.cuda.is_available(),
                           log_with=self.cfg.train.trackers or None, project_dir=str(self.out_dir),
                           fsdp_plugin=fsdp.build_plugin(self.cfg.train.fsdp, model) if self.cfg.train.fsdp else None)

    def build_objective(self) -> torch.nn.Module:
        return Objective(self.cfg.loss)

    def build_evaluator(self) -> PeriodicEvaluator | None:
        if self.cfg.eval is None:
            return None
        sharded = self.cfg.train.fsdp is not None  # every process embeds all the data, each forward gathering
        acc = self.accelerator
        return PeriodicEvaluator(
            self.cfg.eval, self.ema.module if self.cfg.eval.weights == "ema" else self.task.eval_model(),
            self.transforms.eval, self.tokenizer, device=acc.device,
            out_dir=self.out_dir if acc.is_main_process else None, rank=0 if sharded else acc.process_index,
            world_size=1 if sharded else acc.num_processes, broadcast=self.from_main_process,
            gathered=partial(fsdp.root_gathered, self.task.model) if sharded else nullcontext)

    # --- agreement between processes
    def all_ranks(self, ok: bool) -> bool:
        """True only if `ok` holds on every process."""
        acc = self.accelerator
        return acc.gather(torch.tensor(float(ok), device=acc.device)).min().item() == 1.0

    @staticmethod
    def from_main_process(value):
        return broadcast_object_list([value])[0]

    # --- setup
    def setup(self) -> None:
        cfg = self.cfg
        self.started = time.perf_counter()
        check_compatible(cfg)
        set_seed(cfg.train.seed)
        self.setup_accelerator()
        self.setup_task()
        self.setup_optimizer()
        self.setup_data()
        self.checkpoints = CheckpointManager(self.accelerator, self.task, self.scheduler, self.stream,
                                             self.out_dir / "checkpoints", cfg.train.keep_checkpoints, self.ema,
                                             best_metric=cfg.eval.best_metric if cfg.eval else None,
                                             best_mode=cfg.eval.best_mode if cfg.eval else "max")
        config = cfg.model_dump(mode="json")
        self.resumed = self.checkpoints.resume(cfg.train.resume, cfg.train.steps, config, self.out_dir)
        acc = self.accelerator
        if acc.is_main_process:
            if not self.resumed.step:  # a fresh start continues nothing an interrupted attempt left here
                set_aside_previous_attempt(self.out_dir)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not (self.out_dir / "config.yaml").is_file():
                save_config(cfg, self.out_dir / "config.yaml")  # the run's first config; resumes log their changes
        acc.init_trackers("tensorboard", config=tracker_hparams(config))
        self.guard = NonFiniteGuard(cfg.train.on_nonfinite, cfg.train.max_skipped_steps, self.all_ranks)
        self.global_batch = cfg.data.batch_size * cfg.train.accum_steps * acc.num_processes
        self.metrics = MetricsLogger(self.out_dir / "metrics.jsonl" if acc.is_main_process else None, acc.log,
                                     self.global_batch, acc.num_processes, self.resumed.step)
        self.evaluator = self.build_evaluator()
        self.data_wait = DataWaitWatch(cfg.data.num_workers,
                                       torch.get_num_threads() if acc.device.type == "cpu" else None)
        if acc.is_main_process:
            log_start(cfg, acc, self.task.unwrapped, self.global_batch, self.resumed.step, self.out_dir)

    def setup_accelerator(self) -> None:
        cfg = self.cfg
        # Unset temperature and bias come from the objective (SigLIP starts from its paper's values).
        self.model, self.transforms, self.tokenizer = create_model(
            model_for_objective(resolve_model_config(cfg.model), cfg.loss))
        self.accelerator = self.build_accelerator(self.model)
        if cfg.train.fsdp is not None:
            fsdp.check_enabled(self.accelerator.distributed_type, self.accelerator.num_processes)
            log.info("FSDP shard units: %s",
                     ", ".join(self.accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap))
        if self.accelerator.device.type == "cpu":
            torch.set_num_threads(cfg.train.cpu_threads or default_cpu_threads(cfg.data.num_workers, self.model))

    def setup_task(self) -> None:
        for modality in set(self.model.modalities) - set(self.cfg.data.modalities):
            # No data reaches this tower: frozen, it stays out of the optimiser and DDP's gradient reduction.
            self.model.towers[modality].requires_grad_(False)
            log.info("tower %r is frozen: data.modalities does not list it", modality)
        self.objective = self.build_objective()
        self.patch_dropout = PatchDropoutSchedule(self.model, self.cfg.train.steps, self.cfg.train.unmasked_steps)
        if self.cfg.train.compile:
            compile_towers(self.model, self.cfg.train.compile_mode)

    def setup_optimizer(self) -> None:
        cfg = self.cfg
        optimizer = build_optimizer(self.model, cfg.optim)
        # Stepped by hand once per optimiser step (Accelerate would step it once per process); saved as JSON.
        self.scheduler = build_scheduler(optimizer, cfg.train.steps, cfg.optim)
        model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.task = ContrastiveTask(model, self.accelerator.unwrap_model(model), self.objective)
        # After prepare: the average lives on the training device, beside the weights it follows.
        self.ema = WeightAverage(self.task.unwrapped, cfg.train.ema) if cfg.train.ema else None

    def setup_data(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        # Decode failures can leave one rank short of batches: then every rank starts the next epoch together.
        self.stream = DataStream(self.epoch_loader, seed=cfg.train.seed, rank=acc.process_index,
                                 agree=self.all_ranks if acc.num_processes > 1 else None)

    def epoch_loader(self, epoch: int):
        acc = self.accelerator
        return build_loader(self.cfg.data, self.transforms.train, self.tokenizer, train=True, epoch=epoch,
                            seed=self.cfg.train.seed, rank=acc.process_index, world_size=acc.num_processes)

    # --- loop
    def train(self) -> Path | None:
        """The training loop; returns the final model folder (`.../step-N/model`) on the main process."""
        cfg, acc, task, metrics = self.cfg, self.accelerator, self.task, self.metrics
        if self.resumed.finished is not None:  # a requeued job whose run is complete
            return self.resumed.finished / "model" if acc.is_main_process else None
        failures, checkpoint = self.resumed.failures, None
        progress = tqdm(range(self.resumed.step, cfg.train.steps), desc="train", initial=self.resumed.step,
                        total=cfg.train.steps, disable=not acc.is_main_process, file=sys.stdout, dynamic_ncols=True)
        for step in progress:
            self.patch_dropout.apply(step)
            micro_batches = []
            for _ in range(cfg.train.accum_steps):
                with metrics.waiting_for_data():
                    batch = next(self.stream)
                failures.update(batch.pop("__failures__"))
                micro_batches.append(to_device(batch, acc.device))

            with acc.autocast():
                total, terms, outputs = task.training_step(
                    micro_batches, acc.backward, acc.no_sync,
                    check=partial(self.guard.check, step + 1))
            if self.guard.step_ok:
                if cfg.optim.grad_clip_norm is not None:
                    acc.clip_grad_norm_(task.model.parameters(), cfg.optim.grad_clip_norm)
                self.optimizer.step()
                task.after_optimizer_step()
                if self.ema is not None:
                    self.ema.update(task.unwrapped, step + 1)
            self.guard.after_step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            metrics.step_done()

            done = step + 1
            if done % cfg.train.log_every == 0 or done == cfg.train.steps:
                # Each process holds the loss of its own rows; the run's loss is their mean.
                losses = acc.reduce(torch.stack([total.detach(), *(v.detach() for v in terms.values())]), "mean")
                record = metrics.training_record(done, self.stream.epoch, losses, list(terms), {
                    "lr": self.scheduler.get_last_lr()[0],
                    "logit_scale": outputs["logit_scale"].item(),
                    "decode_failures": sum(failures.values()),
                    **{f"decode_failures/{reason}": count for reason, count in failures.items()},
                    **batch_geometry(outputs, concat_batches(micro_batches)),
                })
                progress.set_postfix(loss=f"{record['loss']:.3f}", sps=f"{record['samples_per_s']:.0f}")
                metrics.write(record)
                if acc.is_main_process:
                    self.data_wait(done, record["data_wait_fraction"])
            # Evaluation and checkpoints are not training time; evaluation runs the towers eagerly (train.compile).
            with metrics.paused(), torch.compiler.set_stance("force_eager"):
                evaluated, improves = {}, False
                if self.evaluator is not None and self.evaluator.due(done, cfg.train.steps):
                    evaluated = self.evaluator(done)
                    metrics.write({"step": done, **{f"eval/{k}": v for k, v in evaluated.items()}})
                    improves = self.checkpoints.improves(evaluated)
                    if acc.is_main_process:
                        log.info(eval_line(done, evaluated, cfg.eval.best_metric, self.checkpoints.best, improves))
                if (done == cfg.train.steps or improves
                        or (cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0)):
                    checkpoint = self.checkpoints.save(done, failures, evaluated)
        self.report(checkpoint, failures)
        return checkpoint / "model" if acc.is_main_process else None

    def report(self, final: Path, failures: Counter) -> None:
        """The closing summary, on the main process, with the decode failures of every process."""
        every_process = gather_object([dict(failures)])
        if self.accelerator.is_main_process:
            log.info(summary(best_metric=self.cfg.eval.best_metric if self.cfg.eval else None,
                             best=self.checkpoints.best, final=final,
                             wall_seconds=time.perf_counter() - self.started, totals=self.metrics.totals(),
                             failures=sum(map(Counter, every_process), Counter())))

    def cleanup(self) -> None:
        if hasattr(self, "metrics"):
            self.metrics.close()
        if hasattr(self, "accelerator"):
            self.accelerator.end_training()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        # A run inside a longer-lived process (a notebook, a test session) leaves the thread count as it found it.
        torch.set_num_threads(self.threads_before)


def train(cfg: PretrainConfig, recipe_class: type[PretrainRecipe] = PretrainRecipe) -> Path | None:
    """Run a pretraining config (with a variant recipe, if given); returns the final model folder on the main
    process, else None."""
    recipe = recipe_class(cfg)
    try:
        recipe.setup()
        with logging_redirect_tqdm():  # log lines print above the progress bar instead of through it
            return recipe.train()
    finally:
        recipe.cleanup()


def main(argv: list[str] | None = None, recipe_class: type[PretrainRecipe] = PretrainRecipe) -> int:
    """Entry point for `accelerate launch -m pipelines.pretrain CONFIG [overrides]` and `mmcl train`."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise UserError("usage: pipelines.pretrain CONFIG [key=value ...]")
    cfg = load_config(PretrainConfig, args[0], args[1:])
    try:
        checkpoint = train(cfg, recipe_class)
    except KeyboardInterrupt:  # the caller exits (mmcl: 130); first say where the run stands and how to go on
        if int(os.environ.get("RANK", "0")) == 0:  # every process gets the Ctrl-C; one of them says it
            log.warning(interrupted(Path(cfg.train.output_dir), args[0], args[1:],
                                    int(os.environ.get("WORLD_SIZE", "1"))))
        raise
    if checkpoint is not None:
        print(f"checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    from pipelines.cli import configure_logging, run_guarded

    configure_logging()
    sys.exit(run_guarded(main))
