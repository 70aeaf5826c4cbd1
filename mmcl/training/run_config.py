"""A resumed run against the run it continues: what may change, what may not, and a record of what did.

The data stream's position is only meaningful for the same stream: every `data.*` field, `train.seed` and
`train.accum_steps` decide which samples come in which order (the process count is checked separately). Anything
else — logging, evaluation, checkpoint interval, a longer `train.steps` — may change on resume, and is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mmcl.config import flatten
from mmcl.errors import UserError

log = logging.getLogger("mmcl.train")

DATA_ORDER = ("data.", "train.seed", "train.accum_steps")
IGNORED = ("train.resume",)  # how the run was asked to continue is not part of it


def changes(before: dict, after: dict) -> dict[str, list]:
    """`{key: [before, after]}` for each dotted key whose value differs (missing on one side: None)."""
    old, new = flatten(before), flatten(after)
    return {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k) and not k.startswith(IGNORED)}


def check_resumable(before: dict, after: dict, where: Path) -> dict[str, list]:
    """The changes between the run's config (`before`, read from `where`) and this one; refused, naming every key,
    when one of them decides the data order."""
    found = changes(before, after)
    refused = {k: v for k, v in found.items() if k.startswith(DATA_ORDER)}
    if refused:
        listed = "; ".join(f"{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in refused.items())
        raise UserError(f"cannot resume: these fields decide the data order and differ from the run's config "
                        f"({where}): {listed}. Restore them, or start a new run in another train.output_dir")
    return found


def record_resume(out_dir: Path, step: int, found: dict[str, list]) -> None:
    """Log the allowed changes and append them to OUTPUT/resumes.jsonl (config.yaml stays the run's first)."""
    for key, (before, after) in found.items():
        log.info("resumed with %s changed: %s -> %s", key, json.dumps(before), json.dumps(after))
    out_dir.mkdir(parents=True, exist_ok=True)  # a run resumed from a checkpoint elsewhere starts its own folder
    with (out_dir / "resumes.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "changed": found}) + "\n")
