"""One results table over many models (rows) and tasks (columns), as `clip_benchmark build` makes.

Each (model, task) result is its own JSON file, `DIR/results/<model>/<task>.json`, so an interrupted or extended
sweep reruns only what is missing (`skip_existing`); the table is rebuilt from the files every time:
`DIR/table.csv` holds every scalar metric (with `[low]`/`[high]` columns where a bootstrap interval exists) and
`DIR/table.md` the headline metrics, `value [low, high]`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from mmcl.eval.report import flatten, read_results, write_json
from mmcl.eval.summary import with_interval

RESULTS = "results"


def slug(text: str) -> str:
    """A file name for a model spec or task name: path separators and odd characters become `_`."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text.strip("/")) or "_"


def result_path(table_dir: Path, model: str, task: str) -> Path:
    return table_dir / RESULTS / slug(model) / f"{slug(task)}.json"


def missing_tasks(table_dir: Path, model: str, task_names: list[str], skip_existing: bool) -> list[str]:
    """The tasks to run for `model`: all, or with `skip_existing` those without a result file."""
    return [t for t in task_names if not (skip_existing and result_path(table_dir, model, t).is_file())]


def store(table_dir: Path, model: str, results: list[dict]) -> None:
    for result in results:
        write_json(result, result_path(table_dir, model, result["name"]))


def headline_keys(result: dict) -> list[str]:
    """The metrics a table column shows for this result: what its summary headline reports."""
    keys = list(flatten(result["metrics"]))
    if result["task"] in ("zeroshot_classification", "linear_probe"):
        return [k for k in ("mAP", "top1", "top5", "mean_per_class_recall") if k in keys]  # mAP: multi-label
    if result["task"] == "geometry":
        return [k for k in keys if k.endswith(("/modality_gap", "/linear_separability"))]
    return [k for k in keys if k.endswith(("recall@1", "recall@5"))]


def build(table_dir: Path, models: list[str], task_names: list[str]) -> tuple[Path, Path]:
    """Write table.csv and table.md from the stored results of `models` x `task_names`; a missing pair is an
    empty cell. Returns both paths."""
    rows = {m: {t: _read(result_path(table_dir, m, t)) for t in task_names} for m in models}
    csv_columns: list[tuple[str, str, str | None]] = []  # (task, metric key, None or the interval's end)
    md_columns: list[tuple[str, str]] = []
    for task in task_names:
        results = [r[task] for r in rows.values() if r[task] is not None]
        for key in dict.fromkeys(k for r in results for k in flatten(r["metrics"])):
            bounded = any(key in r.get("intervals", {}) for r in results)
            csv_columns += [(task, key, None)] + ([(task, key, "low"), (task, key, "high")] if bounded else [])
        md_columns += [(task, k) for k in dict.fromkeys(k for r in results for k in headline_keys(r))]
    csv_path, md_path = table_dir / "table.csv", table_dir / "table.md"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", *(f"{t}/{k}" + (f" [{end}]" if end else "") for t, k, end in csv_columns)])
        for model, results in rows.items():
            writer.writerow([model, *(_csv_cell(results[t], k, end) for t, k, end in csv_columns)])
    lines = ["| model | " + " | ".join(f"{t}/{k}" for t, k in md_columns) + " |",
             "|---|" + "---|" * len(md_columns)]
    for model, results in rows.items():
        cells = [_md_cell(results[t], k) for t, k in md_columns]
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    intervals = next((r.get("bootstrap") for rs in rows.values() for r in rs.values() if r and r.get("bootstrap")),
                     None)
    note = (["", f"[low, high]: {100 * intervals['level']:g}% percentile-bootstrap intervals over the items."]
            if intervals else [])
    md_path.write_text("\n".join(lines + note) + "\n", encoding="utf-8")
    return csv_path, md_path


def _read(path: Path) -> dict | None:
    return read_results(str(path))[0] if path.is_file() else None


def _csv_cell(result: dict | None, key: str, end: str | None) -> str:
    if result is None:
        return ""
    if end is not None:
        bounds = result.get("intervals", {}).get(key)
        return "" if bounds is None else repr(bounds[0 if end == "low" else 1])
    value = flatten(result["metrics"]).get(key)
    return "" if value is None else repr(value)


def _md_cell(result: dict | None, key: str) -> str:
    if result is None:
        return "–"
    value = flatten(result["metrics"]).get(key)
    return "–" if value is None else with_interval(result, key, value)
