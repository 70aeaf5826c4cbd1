"""Pretraining recipe: read it top to bottom to know what a run does.

    mmcl train configs/demo.yaml optim.lr=1e-3                      # one process
    mmcl train --num-processes 2 configs/demo.yaml                  # two local processes (torchrun)
    accelerate launch --multi_gpu --num_processes 2 -m pipelines.pretrain configs/demo.yaml
    torchrun --nproc_per_node 2 -m pipelines.pretrain configs/demo.yaml

setup (Accelerate, model, objective, optimiser, data stream, resume) ▶ loop: accum_steps micro-batches ▶ forward
▶ named loss terms ▶ non-finite check ▶ backward ▶ clip ▶ step ▶ metrics line every log_every steps ▶ checkpoint
every checkpoint_every steps ▶ cleanup.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import nullcontext
from itertools import combinations
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from tqdm import tqdm

from mmcl.config import load_config, save_config
from mmcl.data import build_loader
from mmcl.errors import UserError
from mmcl.eval import geometry, run_tasks, scalars
from mmcl.eval.cache import DecodedCache
from mmcl.losses.objective import Objective
from mmcl.models import create_model, save_model
from mmcl.models.factory import resolve_model_config
from mmcl.optim import build_optimizer, build_scheduler
from mmcl.training import checkpoints, fsdp
from mmcl.training.accumulation import concat_batches, forward_backward
from mmcl.training.data_stream import DataStream
from mmcl.training.launch import launch_local
from pipelines.pretrain_config import PretrainConfig

log = logging.getLogger("mmcl.train")

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def check_compatible(cfg: PretrainConfig) -> None:
    """Cross-section checks that need neither data nor a built model, so a wrong config fails at once."""
    model_modalities = list(resolve_model_config(cfg.model).towers)
    missing = [m for m in cfg.data.modalities if m not in model_modalities]
    if missing:
        raise UserError(f"data.modalities lists {missing} but the model has towers only for {model_modalities}")
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


def default_cpu_threads(num_workers: int) -> int:
    """This process's share of the machine's cores, less one per loader worker: more threads than cores make
    OpenMP threads spin against the workers and slow training several times over."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, len(os.sched_getaffinity(0)) // local_processes - num_workers)


def flat_hparams(tree: dict, prefix: str = "") -> dict:
    """The config as `{dotted.key: scalar}`, the form experiment trackers accept as hyperparameters."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, bool, str)) else json.dumps(value)
    return flat


def batch_geometry(outputs: dict, batch: dict) -> dict:
    """Modality gap and uniformity of this process's rows of the step: a cheap live view of the space."""
    modalities = [m for m in outputs if outputs[m].ndim == 2]
    found = {}
    for m in modalities:
        present = outputs[m][batch[f"{m}_mask"]].detach().float() if f"{m}_mask" in batch else outputs[m].detach()
        if len(present) > 1:
            found[f"geometry/uniformity/{m}"] = geometry.uniformity(present)
    for a, b in combinations(modalities, 2):
        both = batch[f"{a}_mask"] & batch[f"{b}_mask"]
        if both.sum() > 0:
            found[f"geometry/gap/{a}-{b}"] = geometry.modality_gap(outputs[a][both].detach().float(),
                                                                   outputs[b][both].detach().float())
    return found


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train(cfg: PretrainConfig) -> Path | None:
    """Run the training loop; returns the final model folder (`.../step-N/model`) on the main process, else None."""
    # --- setup
    check_compatible(cfg)
    out_dir = Path(cfg.train.output_dir)
    checkpoint_dir = out_dir / "checkpoints"
    set_seed(cfg.train.seed)
    model, transforms, tokenizer = create_model(cfg.model)
    # Without cpu=True Accelerate treats CPU processes under torchrun/accelerate launch as independent runs.
    accelerator = Accelerator(mixed_precision=PRECISION[cfg.train.precision], cpu=not torch.cuda.is_available(),
                              log_with=cfg.train.trackers or None, project_dir=str(out_dir),
                              fsdp_plugin=fsdp.build_plugin(cfg.train.fsdp, model) if cfg.train.fsdp else None)
    rank, world_size = accelerator.process_index, accelerator.num_processes
    sharded = cfg.train.fsdp is not None
    if sharded:
        fsdp.check_enabled(accelerator.distributed_type, world_size)
        log.info("FSDP shard units: %s", ", ".join(accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap))
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.train.cpu_threads or default_cpu_threads(cfg.data.num_workers))
    for modality in set(model.modalities) - set(cfg.data.modalities):
        # No data reaches this tower: frozen, it stays out of the optimiser and DDP's gradient reduction.
        model.towers[modality].requires_grad_(False)
        log.info("tower %r is frozen: data.modalities does not list it", modality)
    objective = Objective(cfg.loss)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.train.steps, cfg.optim)
    # The scheduler is stepped by hand once per optimiser step: Accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    checkpoints.weights_in_model_folder_only(accelerator, unwrapped)
    stream = DataStream(
        lambda epoch: build_loader(cfg.data, transforms.train, tokenizer, train=True, epoch=epoch,
                                   seed=cfg.train.seed, rank=rank, world_size=world_size),
        seed=cfg.train.seed, rank=rank,
    )
    start_step = 0
    best = {}  # {"step", "metric", "value", "folder"} of the best evaluated checkpoint so far
    resume_from = checkpoints.resolve_resume(cfg.train.resume, checkpoint_dir) if cfg.train.resume else None
    if resume_from is not None:
        saved_by = len(list((resume_from / "train_state").glob("data_position_*.json")))
        if saved_by != world_size:
            raise UserError(f"{resume_from} was written by {saved_by} process(es); resume it with the same number "
                            f"(this run has {world_size}) so that every process continues its own data stream")
        position = checkpoints.read_json(resume_from / "train_state" / f"data_position_{rank}.json")
        stream.load_state_dict(position)
        # After the data replay, so the RNG states are exactly those saved (the replay may draw from them).
        checkpoints.load_train_state(accelerator, scheduler, resume_from / "train_state")
        start_step = position["step"]
        if (checkpoint_dir / "best.json").is_file():
            best = checkpoints.read_json(checkpoint_dir / "best.json")
        log.info("resumed from %s at step %d", resume_from, start_step)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    accelerator.init_trackers("tensorboard", config=flat_hparams(cfg.model_dump(mode="json")))
    metrics_file = (out_dir / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    failures: Counter[str] = Counter()
    global_batch = cfg.data.batch_size * cfg.train.accum_steps * world_size
    if accelerator.is_main_process:
        parameters = [(p.numel(), p.requires_grad) for p in unwrapped.parameters()]
        log.info("%d process(es) on %s (%s, %d compute threads each); global batch %d = %d per process x %d "
                 "micro-batch(es) x %d; steps %d to %d, %d samples; %.2fM parameters, %.2fM trainable; output %s",
                 world_size, accelerator.device.type, cfg.train.precision, torch.get_num_threads(), global_batch,
                 cfg.data.batch_size, cfg.train.accum_steps, world_size, start_step + 1, cfg.train.steps,
                 (cfg.train.steps - start_step) * global_batch, sum(n for n, _ in parameters) / 1e6,
                 sum(n for n, trainable in parameters if trainable) / 1e6, out_dir)

    def all_finite(total: torch.Tensor, terms: dict) -> bool:
        """Agreed across processes, so that all skip or none does (a lone skip would hang the others)."""
        finite = torch.tensor(float(torch.isfinite(total.detach()).item()), device=accelerator.device)
        if accelerator.gather(finite).min().item() == 1.0:
            return True
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach())]
        message = f"step {step + 1}: non-finite loss (terms {bad or 'on another process'})"
        if cfg.train.on_nonfinite == "halt":
            raise FloatingPointError(message + "; halting, weights left unchanged (train.on_nonfinite=halt)")
        log.warning("%s; step skipped, weights unchanged", message)
        return False

    def save_checkpoint(step: int) -> Path:
        folder = checkpoints.step_folder(checkpoint_dir, step)
        staging = checkpoints.temporary(folder)
        weights = accelerator.get_state_dict(model)  # gathered from every process's shard under FSDP
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            save_model(unwrapped, staging / "model", weights)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging / "train_state"), safe_serialization=True)
        checkpoints.write_json(staging / "train_state" / f"data_position_{rank}.json",
                               {"step": step, **stream.state_dict()})
        if accelerator.is_main_process:
            checkpoints.save_scheduler(scheduler, staging / "train_state")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            checkpoints.publish(folder)
            checkpoints.prune(checkpoint_dir, cfg.train.keep_checkpoints,
                              protect={Path(best["folder"])} if best else set())
        accelerator.wait_for_everyone()
        return folder

    eval_cache = DecodedCache(int(cfg.eval.cache_gb * 2**30)) if cfg.eval is not None else None

    def evaluate(step: int) -> dict[str, float]:
        """Run the evaluation tasks on every process, each embedding its share of the data (under FSDP all of it, in
        step: each forward gathers parameters from every process); the main process writes the results."""
        found: dict | str
        try:
            with fsdp.root_gathered(model) if sharded else nullcontext():
                results = run_tasks(unwrapped, transforms.eval, tokenizer, cfg.eval.tasks, accelerator.device,
                                    cfg.eval.batch_size, cfg.eval.num_workers, cache=eval_cache,
                                    rank=0 if sharded else rank, world_size=1 if sharded else world_size,
                                    image_limits=cfg.eval.image_limits)
            found = scalars(results)
            if accelerator.is_main_process:
                (out_dir / "eval").mkdir(exist_ok=True)
                checkpoints.write_json(out_dir / "eval" / f"step-{step:08d}.json", results)
            if cfg.eval.best_metric is not None and cfg.eval.best_metric not in found:
                raise UserError(f"eval.best_metric={cfg.eval.best_metric} is not among the evaluation's "
                                "metrics: " + ", ".join(sorted(found)))
        except UserError as err:
            found = str(err)  # raised on every process below, so none is left waiting
        found = broadcast_object_list([found])[0]  # the main process's verdict, for all
        if isinstance(found, str):
            raise UserError(found)
        return found

    def improves(value: float) -> bool:
        if not best:
            return True
        return value > best["value"] if cfg.eval.best_mode == "max" else value < best["value"]

    # --- loop
    progress = tqdm(range(start_step, cfg.train.steps), desc="train", initial=start_step, total=cfg.train.steps,
                    disable=not accelerator.is_main_process, file=sys.stdout, dynamic_ncols=True)
    window_start, data_wait, skipped_in_a_row, steps_in_window = time.perf_counter(), 0.0, 0, 0
    checkpoint = None
    for step in progress:
        model.train()
        micro_batches = []
        for _ in range(cfg.train.accum_steps):
            wait_start = time.perf_counter()
            batch = next(stream)
            data_wait += time.perf_counter() - wait_start
            failures.update(batch.pop("__failures__"))
            micro_batches.append(to_device(batch, accelerator.device))

        with accelerator.autocast():
            total, terms, outputs = forward_backward(model, objective, micro_batches, accelerator.backward,
                                                     accelerator.no_sync, check=all_finite)
        if torch.isfinite(total):
            skipped_in_a_row = 0
            if cfg.optim.grad_clip_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
            optimizer.step()
            with torch.no_grad():  # keep the temperature parameter itself inside its bound, as CLIP does
                unwrapped.logit_scale.clamp_(max=unwrapped.log_scale_max)
        else:
            skipped_in_a_row += 1
            if skipped_in_a_row >= cfg.train.max_skipped_steps:
                raise FloatingPointError(f"{skipped_in_a_row} non-finite steps in a row (train.max_skipped_steps)")
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        steps_in_window += 1

        done = step + 1
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            elapsed = time.perf_counter() - window_start
            samples_per_s = steps_in_window * global_batch / elapsed
            # Each process holds the loss of its own rows; the run's loss is their mean.
            logged = accelerator.reduce(torch.stack([total.detach(), *(v.detach() for v in terms.values())]), "mean")
            record = {
                "step": done,
                "epoch": stream.epoch,
                "samples_seen": done * global_batch,
                "loss": logged[0].item(),
                **{name: value.item() for name, value in zip(terms, logged[1:])},
                "lr": scheduler.get_last_lr()[0],
                "logit_scale": outputs["logit_scale"].item(),
                "samples_per_s": samples_per_s,
                "samples_per_s_per_process": samples_per_s / world_size,
                "data_wait_fraction": data_wait / elapsed,
                "decode_failures": sum(failures.values()),
                **{f"decode_failures/{reason}": count for reason, count in failures.items()},
                **batch_geometry(outputs, concat_batches(micro_batches)),
            }
            accelerator.log({k: v for k, v in record.items() if k not in ("step", "decode_failures")}, step=done)
            progress.set_postfix(loss=f"{record['loss']:.3f}", sps=f"{samples_per_s:.0f}")
            if metrics_file is not None:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            window_start, data_wait, steps_in_window = time.perf_counter(), 0.0, 0
        evaluated, paused = {}, time.perf_counter()
        if cfg.eval is not None and (done % cfg.eval.every == 0 or done == cfg.train.steps):
            evaluated = evaluate(done)
            accelerator.log({f"eval/{k}": v for k, v in evaluated.items()}, step=done)
            if metrics_file is not None:
                metrics_file.write(json.dumps({"step": done, **{f"eval/{k}": v for k, v in evaluated.items()}}) + "\n")
                metrics_file.flush()
        new_best = bool(evaluated) and cfg.eval.best_metric is not None and improves(evaluated[cfg.eval.best_metric])
        if (new_best or done == cfg.train.steps
                or (cfg.train.checkpoint_every and done % cfg.train.checkpoint_every == 0)):
            if new_best:  # recorded first, so that pruning in this save already protects it
                best = {"step": done, "metric": cfg.eval.best_metric, "value": evaluated[cfg.eval.best_metric],
                        "folder": str(checkpoints.step_folder(checkpoint_dir, done))}
            checkpoint = save_checkpoint(done)
            if new_best and accelerator.is_main_process:
                checkpoints.write_json(checkpoint_dir / "best.json", best)
        window_start += time.perf_counter() - paused  # evaluation and checkpoints do not count against samples/s

    # --- cleanup
    if metrics_file is not None:
        metrics_file.close()
    accelerator.end_training()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return checkpoint / "model" if accelerator.is_main_process else None


def main(argv: list[str] | None = None) -> int:
    """Entry point for `accelerate launch -m pipelines.pretrain CONFIG [overrides]` and `mmcl train`."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise UserError("usage: pipelines.pretrain CONFIG [key=value ...]")
    cfg = load_config(PretrainConfig, args[0], args[1:])
    checkpoint = train(cfg)
    if checkpoint is not None:
        print(f"checkpoint: {checkpoint}")
    return 0


def _run(args) -> int:
    overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
    if args.num_processes > 1:
        check_compatible(load_config(PretrainConfig, args.config, overrides))  # fail once here, not in N processes
        return launch_local(args.num_processes, "pipelines.pretrain", [args.config, *overrides])
    return main([args.config, *overrides])


def register(parser) -> None:
    """Fill in `mmcl train` (its parser, made by pipelines/cli.py)."""
    parser.description = ("Train from a config under configs/, with dotted overrides. Several processes: "
                          "--num-processes N here, or `accelerate launch` / `torchrun` on `-m pipelines.pretrain` "
                          "(see the README).")
    parser.add_argument("config", help="Pretraining config YAML (see `mmcl config show`).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Dotted overrides, e.g. optim.lr=1e-3 data.batch_size=64.")
    parser.add_argument("--num-processes", type=int, default=1,
                        help="Local processes (gloo on CPU, NCCL on GPUs), launched through torchrun (default 1).")
    parser.add_argument("--resume", metavar="latest|auto|FOLDER",
                        help="Continue from the newest checkpoint of train.output_dir (auto: or start afresh if "
                        "there is none, for requeued jobs), or from FOLDER.")
    parser.set_defaults(func=_run)


if __name__ == "__main__":
    from pipelines.cli import configure_logging, run_guarded

    configure_logging()
    sys.exit(run_guarded(main))
