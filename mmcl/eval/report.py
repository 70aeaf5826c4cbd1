"""Result files: JSON for machines, a Markdown summary for people, and side-by-side comparison of two results.

A result file holds one task's result, several under `results` (`mmcl eval`), or several keyed by task name
(`run_tasks`, as a trainer writes them); `task_results` reads all three.
"""

from __future__ import annotations

import json
from pathlib import Path

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
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: result file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not a JSON result file: {err}") from None
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


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(results: list[dict], model: str) -> str:
    """A summary people read: one table of scalar metrics per task, with the prompts and skipped samples."""
    lines = [f"# Evaluation of `{model}`", ""]
    for r in results:
        lines += [f"## {r['name']} ({r['task']})", "", f"Data: `{r['dataset']['path']}` "
                  f"({r['dataset']['format']}, {r['dataset']['num_items']} items)", ""]
        if r["dataset"].get("skipped"):
            lines += ["Skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(r["dataset"]["skipped"].items())), ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in flatten(r["metrics"]).items()]
        if r["metrics"].get("top5_note"):
            lines += ["", f"top-5: {r['metrics']['top5_note']}."]
        if "templates" in r:
            lines += ["", f"Prompts: {len(r['classnames'])} class names × {len(r['templates'])} templates: "
                      + ", ".join(f"`{t}`" for t in r["templates"])]
            recalls = r["metrics"]["per_class_recall"]
            worst = sorted((v, c) for c, v in zip(r["classnames"], recalls) if v is not None)[:5]
            lines += ["", "Lowest per-class accuracy: " + ", ".join(f"{c} {v:.3f}" for v, c in worst)]
        lines.append("")
    return "\n".join(lines)


def compare(a: list[dict], b: list[dict], names: tuple[str, str]) -> str:
    """Every scalar metric the two result sets share, side by side with the difference b − a."""
    left, right = scalars(a), scalars(b)
    shared = [k for k in left if k in right]
    if not shared:
        raise UserError(f"{names[0]} and {names[1]} share no metrics (different tasks or task names?)")
    width = max(len(k) for k in shared)
    rows = [f"{'metric':<{width}}  {'A':>10}  {'B':>10}  {'B - A':>10}"]
    rows += [f"{k:<{width}}  {left[k]:>10.4f}  {right[k]:>10.4f}  {right[k] - left[k]:>+10.4f}" for k in shared]
    only = sorted(set(left) ^ set(right))
    if only:
        rows.append(f"({len(only)} metrics appear in only one file, e.g. {only[0]})")
    return f"A: {names[0]}\nB: {names[1]}\n" + "\n".join(rows)
