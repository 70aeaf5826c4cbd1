"""Pretraining recipe: read it top to bottom to know what a run does.

    mmcl train configs/demo.yaml optim.lr=1e-3          # one process
    accelerate launch --multi_gpu --num_processes 2 -m pipelines.pretrain configs/demo.yaml   # many

Setup (config, Accelerate, model, objective, optimiser) ▶ loop (batch ▶ forward ▶ named loss terms ▶ backward
▶ clip ▶ step) with a metrics line every `log_every` steps ▶ checkpoints ▶ cleanup.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from mmcl.config import load_config, save_config
from mmcl.data import build_loader
from mmcl.errors import UserError
from mmcl.losses.objective import Objective
from mmcl.models import create_model, save_model
from mmcl.optim import build_optimizer, build_scheduler
from pipelines.pretrain_config import PretrainConfig

log = logging.getLogger("mmcl.train")

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def check_compatible(cfg: PretrainConfig, model_modalities: list[str]) -> None:
    """Cross-section checks that need no data, so a wrong config fails before anything is read."""
    missing = [m for m in cfg.data.modalities if m not in model_modalities]
    if missing:
        raise UserError(f"data.modalities lists {missing} but the model has towers only for {model_modalities}")


def endless_batches(cfg: PretrainConfig, transforms, tokenizer, rank: int, world_size: int):
    """Batches forever; each pass over this rank's shards is one epoch with its own shard order."""
    epoch = 0
    while True:
        produced = 0
        for batch in build_loader(cfg.data, transforms, tokenizer, train=True, epoch=epoch,
                                  seed=cfg.train.seed, rank=rank, world_size=world_size):
            produced += 1
            yield epoch, batch
        if produced == 0:
            raise UserError(f"data.train_shards: an epoch on rank {rank} produced no full batch of "
                            f"{cfg.data.batch_size}; add data or lower data.batch_size")
        epoch += 1


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train(cfg: PretrainConfig) -> Path:
    """Run the training loop; returns the final checkpoint's folder on the main process, None elsewhere."""
    # --- setup
    # Without cpu=True Accelerate treats CPU processes under torchrun/accelerate launch as independent runs.
    accelerator = Accelerator(mixed_precision=PRECISION[cfg.train.precision], cpu=not torch.cuda.is_available())
    set_seed(cfg.train.seed)
    out_dir = Path(cfg.train.output_dir)
    model, transforms, tokenizer = create_model(cfg.model)
    check_compatible(cfg, model.modalities)
    objective = Objective(cfg.loss)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.train.steps, cfg.optim)
    # The scheduler is stepped by hand once per optimiser step: Accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    metrics_file = (out_dir / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    batches = endless_batches(cfg, transforms.train, tokenizer, accelerator.process_index, accelerator.num_processes)
    failures: Counter[str] = Counter()
    global_batch = cfg.data.batch_size * accelerator.num_processes

    # --- loop
    progress = tqdm(range(cfg.train.steps), desc="train", disable=not accelerator.is_main_process, file=sys.stdout)
    window_start, data_wait = time.perf_counter(), 0.0
    checkpoint = None
    for step in progress:
        model.train()
        wait_start = time.perf_counter()
        epoch, batch = next(batches)
        data_wait += time.perf_counter() - wait_start
        failures.update(batch.pop("__failures__"))
        batch = to_device(batch, accelerator.device)

        with accelerator.autocast():
            outputs = model(batch)
            total, terms = objective(outputs, batch)
        if not torch.isfinite(total):
            bad = [name for name, value in terms.items() if not torch.isfinite(value)]
            raise FloatingPointError(f"step {step}: non-finite loss in term(s) {bad}; weights left unchanged")
        accelerator.backward(total)
        if cfg.optim.grad_clip_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            elapsed = time.perf_counter() - window_start
            steps_in_window = (done - 1) % cfg.train.log_every + 1
            record = {
                "step": done,
                "epoch": epoch,
                "samples_seen": done * global_batch,
                "loss": total.item(),
                **{name: value.item() for name, value in terms.items()},
                "lr": scheduler.get_last_lr()[0],
                "logit_scale": outputs["logit_scale"].item(),
                "samples_per_s": steps_in_window * global_batch / elapsed,
                "data_wait_fraction": data_wait / elapsed,
                "decode_failures": dict(failures),
            }
            progress.set_postfix(loss=f"{record['loss']:.3f}", sps=f"{record['samples_per_s']:.0f}")
            if metrics_file is not None:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            window_start, data_wait = time.perf_counter(), 0.0
        if done == cfg.train.steps or (cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0):
            checkpoint = out_dir / "checkpoints" / f"step-{done:08d}"
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_model(accelerator.unwrap_model(model), checkpoint)

    # --- cleanup
    if metrics_file is not None:
        metrics_file.close()
    accelerator.end_training()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return checkpoint if accelerator.is_main_process else None


def register(commands) -> None:
    """Add `mmcl train` to the top-level parser."""
    parser = commands.add_parser("train", help="Train a model from a YAML config.",
                                 description="Train from a config under configs/, with dotted overrides. "
                                 "For several processes use `accelerate launch` or `torchrun` (see the README).")
    parser.add_argument("config", help="Pretraining config YAML (see `mmcl config show`).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Dotted overrides, e.g. optim.lr=1e-3 data.batch_size=64.")
    parser.set_defaults(func=lambda args: main([args.config, *args.overrides]))


def main(argv: list[str] | None = None) -> int:
    """Entry point for `accelerate launch -m pipelines.pretrain CONFIG [overrides]`."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise UserError("usage: pipelines.pretrain CONFIG [key=value ...]")
    cfg = load_config(PretrainConfig, args[0], args[1:])
    checkpoint = train(cfg)
    if checkpoint is not None:
        print(f"checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    from pipelines.cli import run_guarded

    sys.exit(run_guarded(main))
