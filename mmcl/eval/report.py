"""Result files: writing and reading them, and their scalar metrics (the Markdown summary: `summary`; two results
side by side: `compare`).

A result file holds one task's result, several under `results` (`mmcl eval`), or several keyed by task name
(`run_tasks`, as a trainer writes them); `task_results` reads all three.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmcl.config import read_json
from mmcl.errors import UserError


def write_json(data: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def task_results(data: dict) -> list[dict]:
    """The task results in a result file's contents, whichever of the three shapes it has."""
    if "results" in data:
        return data["results"]
    if "metrics" in data:
        return [data]
    return list(data.values())


def read_results(path: str | Path) -> list[dict]:
    data = read_json(path, "an mmcl eval result file")
    if not isinstance(data, dict) or not all(isinstance(r, dict) and "metrics" in r for r in task_results(data)):
        raise UserError(f"{path}: not an mmcl eval result (no metrics)")
    return task_results(data)


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Scalar metrics as `a/b/c` keys; lists (per-class values, confusion matrices) and None are left out."""
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def scalars(results: dict[str, dict] | list[dict]) -> dict[str, float]:
    """`task-name/metric` scalars of several results, e.g. for a training metrics log."""
    items = results.values() if isinstance(results, dict) else results
    return {k: v for r in items for k, v in flatten(r["metrics"], r["name"] + "/").items()}
