"""Checkpoint folders of a run: written atomically, the last K kept (plus the best), the latest found for resume.

A checkpoint `OUTPUT/checkpoints/step-00000100/` holds `model/` (safetensors weights + model.yaml: all that
`mmcl eval` needs) and `train_state/` (Accelerate's save_state: optimiser, scheduler, scaler, RNG states of every
process, plus each process's data position; the model's weights only when sharded by FSDP, else they are read
back from `model/`), and `scheduler.json`. It is written under a `.tmp` name and renamed when complete, so a
folder with a final name is always whole. `OUTPUT/checkpoints/best` is an alias of the best one (a relative symlink,
or where symlinks are unavailable a file holding its folder name), so that `mmcl eval OUTPUT/checkpoints/best` and
`mmcl eval OUTPUT` (the run folder: its best checkpoint, else its latest) name a model without a step number.

A checkpoint given to `train.resume` may come from anywhere, so nothing in it can run code when read: weights are
safetensors, the scheduler and data positions JSON, and Accelerate reads its optimiser and RNG files with
`torch.load(weights_only=True)` (tensors, numbers and numpy arrays only). A folder holding other pickles (such as
Accelerate's `custom_checkpoint_*.pkl`, which it would unpickle in full) is refused.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

from safetensors.torch import load_file

from mmcl.errors import UserError
from mmcl.models.checkpoint import WEIGHTS

_NAME = re.compile(r"^step-(\d{8})$")


def step_folder(checkpoint_dir: Path, step: int) -> Path:
    return checkpoint_dir / f"step-{step:08d}"


def temporary(folder: Path) -> Path:
    return folder.with_name(folder.name + ".tmp")


def complete_checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first; `.tmp` leftovers of a killed save are ignored."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_resume(resume: str, checkpoint_dir: Path) -> Path | None:
    """The checkpoint to continue from: `latest` (the newest complete one of this run; there must be one),
    `auto` (the same, or None to start afresh when there is none: for jobs that a scheduler may requeue),
    or an explicit checkpoint folder."""
    if resume in ("latest", "auto"):
        found = complete_checkpoints(checkpoint_dir)
        if found:
            return found[-1][1]
        if resume == "auto":
            return None
        raise UserError(f"train.resume=latest: no complete checkpoint in {checkpoint_dir} (the run stopped before "
                        "its first one); --resume auto (train.resume=auto) resumes when there is one and starts "
                        "afresh when there is none")
    folder = resolve_alias(Path(resume))
    if not (folder / "train_state").is_dir():
        raise UserError(f"train.resume={resume}: not a training checkpoint (no train_state/ inside)")
    return folder


BEST = "best"


def link_best(checkpoint_dir: Path, folder: Path) -> None:
    """Point `checkpoints/best` at `folder` (one of `checkpoint_dir`'s), replacing the alias atomically. The link is
    relative so that a moved or copied run folder keeps it."""
    alias = checkpoint_dir / BEST
    staged = checkpoint_dir / f".{BEST}.new"  # not a `.tmp` name: sweep() must not rmtree through a link
    staged.unlink(missing_ok=True)
    try:
        staged.symlink_to(folder.name, target_is_directory=True)
    except OSError:  # no symlinks here (a filesystem or a Windows account without them): a pointer file
        staged.write_text(folder.name + "\n", encoding="utf-8")
    os.replace(staged, alias)


def resolve_alias(path: Path) -> Path:
    """The checkpoint folder a `best` pointer file names; any other path (a symlink resolves itself) as given."""
    if path.name == BEST and path.is_file():
        return path.parent / path.read_text(encoding="utf-8").strip()
    return path


def run_checkpoint(run_dir: Path) -> tuple[Path, str] | None:
    """The checkpoint a training run folder stands for as a model, and which one that is in words: its best
    (`checkpoints/best`, or `best.json` in runs written before the alias), else its latest complete one. None
    when `run_dir` is not a run folder (no `checkpoints/` inside)."""
    checkpoint_dir = run_dir / "checkpoints"
    if not checkpoint_dir.is_dir():
        return None
    best = resolve_alias(checkpoint_dir / BEST)
    if not best.is_dir() and (checkpoint_dir / "best.json").is_file():
        best = checkpoint_dir / Path(read_json(checkpoint_dir / "best.json")["folder"]).name
    if best.is_dir():
        return best, f"best checkpoint ({best.resolve().name})"
    found = complete_checkpoints(checkpoint_dir)
    if not found:
        raise UserError(f"{run_dir}: a training run without a complete checkpoint yet (nothing to evaluate in "
                        f"{checkpoint_dir})")
    return found[-1][1], (f"latest complete checkpoint ({found[-1][1].name}; no best checkpoint: the run has no "
                          "eval.best_metric, or has not evaluated yet)")


SCHEDULER = "scheduler.json"
_UNSAFE_PICKLES = "custom_checkpoint_*.pkl"  # Accelerate unpickles these with weights_only=False


def save_scheduler(scheduler, train_state: Path) -> None:
    """The schedule's position as JSON (its lr function is rebuilt from the config, never stored)."""
    state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    write_json(train_state / SCHEDULER, state)


def load_train_state(accelerator, scheduler, train_state: Path) -> None:
    """Optimiser, scaler and RNG states through Accelerate (weights_only=True), the scheduler from JSON; a state that
    would need unrestricted unpickling is refused with the file named."""
    unsafe = sorted(p.name for p in train_state.glob(_UNSAFE_PICKLES))
    if unsafe or not (train_state / SCHEDULER).is_file():
        found = f"holds {', '.join(unsafe)}" if unsafe else f"has no {SCHEDULER}"
        raise UserError(f"{train_state}: {found}; mmcl resumes only from states it can read without running "
                        "pickled code (written by this version of mmcl)")
    try:
        accelerator.load_state(str(train_state))
    except pickle.UnpicklingError as err:
        raise UserError(f"{train_state}: refused to unpickle a training state file, which holds more than "
                        f"tensors and numbers ({str(err).splitlines()[0]})") from None
    scheduler.load_state_dict({**read_json(train_state / SCHEDULER), "lr_lambdas": [None] * len(scheduler.lr_lambdas)})


def publish(folder: Path) -> None:
    """Rename a finished `.tmp` folder to its final name. An older folder of the same step is first moved aside
    (never deleted before its replacement is in place), then deleted."""
    aside = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(folder, aside)
    os.replace(temporary(folder), folder)
    shutil.rmtree(aside, ignore_errors=True)


def discard(folder: Path) -> None:
    """Delete a checkpoint so that a kill midway never leaves a half-deleted folder under a complete-looking name:
    renamed first, then deleted."""
    doomed = folder.with_name(folder.name + ".deleting")
    os.replace(folder, doomed)
    shutil.rmtree(doomed)


def sweep(checkpoint_dir: Path) -> None:
    """Remove what killed saves and deletions left behind (`.tmp`, `.old`, `.deleting` folders)."""
    if checkpoint_dir.is_dir():
        for leftover in checkpoint_dir.iterdir():
            if leftover.is_dir() and leftover.suffix in (".tmp", ".old", ".deleting"):
                shutil.rmtree(leftover, ignore_errors=True)


def prune(checkpoint_dir: Path, keep_last: int, protect: set[Path]) -> None:
    """Delete all but the newest `keep_last` checkpoints, never those in `protect` (the best one), compared by
    resolved path so that an output_dir spelled differently on resume still protects it."""
    protected = {p.resolve() for p in protect}
    found = complete_checkpoints(checkpoint_dir)
    for _, folder in found[:-keep_last] if keep_last > 0 else found:
        if folder.resolve() not in protected:
            discard(folder)


def write_json(path: Path, data: dict) -> None:
    """Through a temporary file and a rename: a reader (or a resumed run) never sees a half-written file."""
    temporary_file = path.with_name(path.name + ".tmp")
    temporary_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary_file, path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def weights_in_model_folder_only(accelerator, model) -> None:
    """Keep the weights once per checkpoint: Accelerate's save_state would write the tensors of `model/` again into
    `train_state/`; resume reads them from `model/` instead. Under FSDP the train state keeps its per-process shards,
    which are not the gathered weights of `model/`."""
    from accelerate.utils import DistributedType  # here: `mmcl eval` reads run folders through this module

    if accelerator.distributed_type == DistributedType.FSDP:
        return

    def skip_weights(models, weights, output_dir) -> None:
        weights.clear()

    def load_from_model_folder(models, input_dir) -> None:
        model.load_state_dict(load_file(Path(input_dir).parent / "model" / WEIGHTS))
        models.clear()

    accelerator.register_save_state_pre_hook(skip_weights)
    accelerator.register_load_state_pre_hook(load_from_model_folder)
