"""A run's checkpoints: save, resume, best tracking and pruning, with every step atomic.

Saving: weights (`model/`), their moving average (`ema/`, with train.ema), Accelerate's train state, the scheduler position and each process's data position
and failure counts go into `step-N.tmp/`, which is renamed when whole; then `best.json` (if this step is the new
best) is replaced atomically and the `checkpoints/best` alias pointed at it, and only then are older checkpoints
pruned, so neither ever names a deleted folder. Resuming: the checkpoint must come from the same process count and
the same data order (see `run_config`); a run that already reached `train.steps` is reported finished, not re-run.
A resumed run whose learning-rate schedule changed (a longer `train.steps`, `optim.lr` or the schedule's settings)
continues on the new schedule from its first step, and says how the LR moves there.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import broadcast_object_list

from mmcl.config import read_yaml
from mmcl.errors import UserError
from mmcl.models import save_model
from mmcl.training import checkpoints, run_config

log = logging.getLogger("mmcl.train")

LR_SHAPING = ("train.steps", "optim.lr", "optim.schedule", "optim.warmup_steps", "optim.cooldown_steps")


@dataclass
class Resumed:
    """Where a resumed run continues: its step, this process's failure counts, and the best checkpoint so far."""

    step: int = 0
    failures: Counter = field(default_factory=Counter)
    finished: Path | None = None  # the final checkpoint, when the run had already reached train.steps


class CheckpointManager:
    def __init__(self, accelerator, task, scheduler, stream, checkpoint_dir: Path, keep_last: int, ema=None,
                 best_metric: str | None = None, best_mode: str = "max"):
        self.accelerator, self.task, self.scheduler, self.stream = accelerator, task, scheduler, stream
        self.checkpoint_dir, self.keep_last, self.ema = checkpoint_dir, keep_last, ema
        self.best_metric, self.best_mode = best_metric, best_mode
        self.best: dict = {}  # {"step", "metric", "value", "folder"} of the best evaluated checkpoint so far
        self.main = accelerator.is_main_process
        checkpoints.weights_in_model_folder_only(accelerator, task.unwrapped)

    # --- resume
    def resume(self, resume: str | None, steps: int, config: dict, out_dir: Path) -> Resumed:
        """Restore everything from the checkpoint `resume` names (`latest`, `auto` or a folder); a fresh start
        when there is none. `config` is this run's resolved config (a dict), checked against the run's own."""
        if self.main:
            checkpoints.sweep(self.checkpoint_dir)
        folder = checkpoints.resolve_resume(resume, self.checkpoint_dir) if resume else None
        self.accelerator.wait_for_everyone()
        if folder is None:
            return Resumed()
        rank, world_size = self.accelerator.process_index, self.accelerator.num_processes
        state = folder / "train_state"
        saved_by = len(list(state.glob("data_position_*.json")))
        if saved_by != world_size:
            raise UserError(f"{folder} was written by {saved_by} process(es); resume it with the same number "
                            f"(this run has {world_size}) so that every process continues its own data stream")
        position = checkpoints.read_json(state / f"data_position_{rank}.json")
        if position["step"] >= steps:
            log.info("%s is at step %d: the run already reached train.steps=%d, nothing to do", folder,
                     position["step"], steps)
            return Resumed(position["step"], finished=folder)
        changed = self._check_config(folder, config, out_dir, position["step"])
        self.stream.load_state_dict(position["data"])
        peak_lrs = list(self.scheduler.base_lrs)  # this run's optim.lr; loading puts back the checkpoint's
        # After the data replay, so the RNG states are exactly those saved (the replay may draw from them).
        checkpoints.load_train_state(self.accelerator, self.scheduler, state)
        self.scheduler.base_lrs = peak_lrs
        if self.ema is not None:
            self.ema.load(folder, self.task.unwrapped)
        self._continue_schedule(position["step"], changed)
        self.best = self._read_best()
        if self.main and self.best:  # a save killed between best.json and the alias left the alias behind
            checkpoints.link_best(self.checkpoint_dir, Path(self.best["folder"]))
        log.info("resumed from %s at step %d", folder, position["step"])
        return Resumed(position["step"], Counter(position.get("failures", {})))

    def _check_config(self, folder: Path, config: dict, out_dir: Path, step: int) -> dict[str, list]:
        """Against the run's first config.yaml (this output's, or the one beside a checkpoint from elsewhere);
        returns the allowed changes, `{key: [before, after]}`."""
        for run_dir in (out_dir, folder.parent.parent):
            if (run_dir / "config.yaml").is_file():
                found = run_config.check_resumable(read_yaml(run_dir / "config.yaml"), config,
                                                   run_dir / "config.yaml")
                if self.main and found:
                    run_config.record_resume(out_dir, step, found)
                return found
        log.warning("%s: no config.yaml of the run it belongs to; the data order cannot be checked", folder)
        return {}

    def _continue_schedule(self, step: int, changed: dict[str, list]) -> None:
        """The restored optimiser holds the LR the old schedule gave the next step; the scheduler, rebuilt from this
        run's config, may give another (a longer train.steps stretches a cosine, a new optim.lr scales it). Take the
        new one now rather than one step late, and say so: a silent jump in the LR is hard to tell from an
        instability."""
        groups = self.scheduler.optimizer.param_groups
        old = [group["lr"] for group in groups]
        new = [base * factor(step) for base, factor in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        why = [f"{key} {json.dumps(a)} -> {json.dumps(b)}" for key, (a, b) in changed.items() if key in LR_SHAPING]
        if new == old and not why:
            return
        for group, lr in zip(groups, new):
            group["lr"] = lr
        if self.main:
            log.info("resumed at step %d with %s: the learning-rate schedule is recomputed; the LR of step %d "
                     "goes from %.3g (old schedule) to %.3g (new schedule)", step,
                     ", ".join(why) or "a changed schedule", step + 1, old[0], new[0])

    def _read_best(self) -> dict:
        path = self.checkpoint_dir / "best.json"
        if not path.is_file():
            return {}
        best = checkpoints.read_json(path)
        if not Path(best["folder"]).is_dir():
            log.warning("%s names %s, which no longer exists; the best checkpoint is tracked afresh", path,
                        best["folder"])
            return {}
        return best

    # --- best
    def improves(self, evaluated: dict[str, float]) -> bool:
        if self.best_metric is None or not evaluated:
            return False
        value = evaluated[self.best_metric]
        if not self.best:
            return True
        return value > self.best["value"] if self.best_mode == "max" else value < self.best["value"]

    # --- save
    def save(self, step: int, failures: Counter, evaluated: dict[str, float] | None = None) -> Path:
        """Write the checkpoint of `step`; `evaluated` (this step's evaluation) may make it the new best."""
        folder = checkpoints.step_folder(self.checkpoint_dir, step)
        staging = checkpoints.temporary(folder)
        weights = self.task.state_dict_for_inference(self.accelerator.get_state_dict)
        if self.main:
            shutil.rmtree(staging, ignore_errors=True)  # a killed save's leftover
            save_model(self.task.unwrapped, staging / "model", weights)
            if self.ema is not None:
                self.ema.save(staging)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(staging / "train_state"), safe_serialization=True)
        checkpoints.write_json(staging / "train_state" / f"data_position_{self.accelerator.process_index}.json",
                               {"step": step, "data": self.stream.state_dict(), "failures": dict(failures)})
        if self.main:
            checkpoints.save_scheduler(self.scheduler, staging / "train_state")
        self.accelerator.wait_for_everyone()
        if self.main:
            checkpoints.publish(folder)
            if evaluated and self.improves(evaluated):
                self.best = {"step": step, "metric": self.best_metric, "value": evaluated[self.best_metric],
                             "folder": str(folder.resolve())}
                checkpoints.write_json(self.checkpoint_dir / "best.json", self.best)
                checkpoints.link_best(self.checkpoint_dir, folder)
                log.info("new best checkpoint: step %d, %s %.4f: %s (alias %s)", step, self.best_metric,
                         self.best["value"], folder, self.checkpoint_dir / checkpoints.BEST)
            checkpoints.prune(self.checkpoint_dir, self.keep_last,
                              protect={Path(self.best["folder"])} if self.best else set())
        if self.accelerator.num_processes > 1:
            self.best = broadcast_object_list([self.best])[0]  # the main process decided
        self.accelerator.wait_for_everyone()
        return folder
