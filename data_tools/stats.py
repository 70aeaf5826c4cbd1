"""``mmcl shards stats``: a human summary of a shard set, read from the shards themselves (headers only)."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from data_tools.audio import AUDIO_EXTENSIONS
from data_tools.files import STATS, read_json
from data_tools.image import IMAGE_EXTENSIONS
from data_tools.readback import read_shard
from mmcl.errors import UserError


def _modality(ext: str) -> str:
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return {"txt": "text", "cls": "label"}.get(ext, ext)


def _describe(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "mean": round(statistics.fmean(values), 2), "median": statistics.median(values), "max": max(values)}


def collect_stats(output: Path) -> tuple[dict, dict[str, list[float]]]:
    """Return the summary and the raw per-sample values behind it (for plotting)."""
    shards = sorted(output.glob("*.tar"))
    if not shards:
        raise UserError(f"{output}: no *.tar shards found")
    modalities, problems = Counter(), []
    values: dict[str, list[float]] = {"caption_chars": [], "captions_per_sample": [], "image_width": [], "image_height": [], "audio_seconds": []}
    samples = 0
    for path in shards:
        described, shard_problems = read_shard(path, headers_only=True)  # verify is the full decode
        problems += shard_problems
        samples += len(described)
        for sample in described:
            modalities.update({_modality(e) for e in sample["extensions"]} | ({"text"} if sample.get("captions") else set()))
            captions = sample.get("captions") or []
            if captions:
                values["captions_per_sample"].append(len(captions))
            values["caption_chars"] += [len(str(c)) for c in captions]
            for name in ("image_width", "image_height", "audio_seconds"):
                if name in sample:
                    values[name].append(sample[name])
    prepared = read_json(output / STATS) if (output / STATS).exists() else None
    summary = {
        "output": str(output),
        "shards": len(shards),
        "samples": samples,
        "samples_with": dict(sorted(modalities.items())),
        **{name: _describe(v) for name, v in values.items()},
        "audio_hours": round(sum(values["audio_seconds"]) / 3600, 4),
        "skipped_when_prepared": prepared["failures_by_reason"] if prepared else None,
        "read_problems": problems,
    }
    return summary, values


def render_text(summary: dict) -> str:
    lines = [f"{summary['output']}: {summary['samples']} samples in {summary['shards']} shard(s)"]
    lines += [f"  with {name}: {n}" for name, n in summary["samples_with"].items()]
    for name in ("caption_chars", "captions_per_sample", "image_width", "image_height", "audio_seconds"):
        d = summary[name]
        if d:
            lines.append(f"  {name}: min {d['min']}  mean {d['mean']}  median {d['median']}  max {d['max']}")
    if summary["audio_seconds"]:
        lines.append(f"  audio total: {summary['audio_hours']} h")
    skipped = summary["skipped_when_prepared"]
    if skipped is None:
        lines.append("  skipped when prepared: unknown (no stats.json)")
    else:
        lines.append("  skipped when prepared: " + (", ".join(f"{n} {r}" for r, n in skipped.items()) or "none"))
    lines += [f"  read problem: {p}" for p in summary["read_problems"]]
    return "\n".join(lines)


def save_plot(values: dict[str, list[float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install matplotlib") from None
    shown = {name: v for name, v in values.items() if v}
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(4 * max(1, len(shown)), 3), squeeze=False)
    for ax, (name, v) in zip(axes[0], shown.items()):
        ax.hist(v, bins=30)
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
