"""``mmcl shards stats``: a human summary of a shard set, read from the shards themselves (headers only);
optionally the sizes.json that sets written by other tools lack, counted from the same read."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from data_tools.audio import AUDIO_EXTENSIONS
from data_tools.files import PLAN, SIZES, STATS, read_json, write_sizes
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


def _write_counted_sizes(output: Path, counts: dict[str, int], damaged: list[str]) -> None:
    """sizes.json from samples read back; refused if a shard is cut short, as its count would be a guess."""
    if (output / PLAN).exists():  # prepare's own sizes.json marks a finished set; one counted here would hide parts
        raise UserError(f"{output}: written by `mmcl shards prepare`, which writes {SIZES} itself once every part "
                        "is done; run `mmcl shards merge` instead")
    if damaged:
        raise UserError(f"{output}: not writing {SIZES}: {', '.join(damaged)} is truncated or corrupt, so its "
                        "sample count is unknown (see `mmcl shards verify`)")
    write_sizes(output, counts)


def collect_stats(output: Path, write_sizes: bool = False) -> tuple[dict, dict[str, list[float]]]:
    """Return the summary and the raw per-sample values behind it (for plotting).

    ``write_sizes`` also writes sizes.json with the samples counted in each shard.
    """
    shards = sorted(output.glob("*.tar"))
    if not shards:
        raise UserError(f"{output}: no *.tar shards found")
    modalities, problems, failures = Counter(), [], Counter()
    counts, damaged = {}, []
    values: dict[str, list[float]] = {"caption_chars": [], "captions_per_sample": [], "image_width": [], "image_height": [], "audio_seconds": []}
    samples = 0
    for path in shards:
        readback = read_shard(path, headers_only=True)  # verify is the full decode
        problems += readback.problems
        samples += len(readback.samples)
        counts[path.name] = len(readback.samples)
        if readback.damaged:
            damaged.append(path.name)
        for sample in readback.samples:
            failures.update(sample["failures"])
            modalities.update({_modality(e) for e in sample["extensions"]} | ({"text"} if sample.get("captions") else set()))
            captions = sample.get("captions") or []
            if captions:
                values["captions_per_sample"].append(len(captions))
            values["caption_chars"] += [len(str(c)) for c in captions]
            for name in ("image_width", "image_height", "audio_seconds"):
                if name in sample:
                    values[name].append(sample[name])
    if write_sizes:
        _write_counted_sizes(output, counts, damaged)
    prepared = read_json(output / STATS) if (output / STATS).exists() else None
    plan = read_json(output / PLAN) if (output / PLAN).exists() else None
    summary = {
        "output": str(output),
        "shards": len(shards),
        "samples": samples,
        "samples_with": dict(sorted(modalities.items())),
        **{name: _describe(v) for name, v in values.items()},
        "audio_hours": round(sum(values["audio_seconds"]) / 3600, 4),
        "skipped_when_prepared": prepared["failures_by_reason"] if prepared else None,
        # cropped / padded / upscaled, counted by prepare: the shards alone no longer show it.
        "images_resized_when_prepared": prepared.get("images_resized") if prepared else None,
        "image_options_when_prepared": plan["settings"]["options"]["image"] if plan else None,
        "read_failures_by_reason": dict(sorted(failures.items())),
        "read_problems": problems,
        "sizes_written": str(output / SIZES) if write_sizes else None,
    }
    return summary, values


def number(value: float) -> str:
    """A whole number as an integer, anything else to 4 significant digits (more only before the point)."""
    if float(value).is_integer():
        return str(int(value))
    decimals = max(0, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")


def _resized_line(summary: dict) -> str | None:
    resized, options = summary["images_resized_when_prepared"], summary["image_options_when_prepared"]
    if resized is None or options is None or options["resize_mode"] == "none":
        return None
    changed = ", ".join(f"{number(n)} {effect}" for effect, n in resized.items())
    how = f"--resize-mode {options['resize_mode']} --image-size {options['size']}"
    return f"  images when prepared ({how}): {changed}"


def render_text(summary: dict) -> str:
    lines = [f"{summary['output']}: {number(summary['samples'])} samples in {summary['shards']} shard(s)"]
    lines += [f"  with {name}: {number(n)}" for name, n in summary["samples_with"].items()]
    for name in ("caption_chars", "captions_per_sample", "image_width", "image_height", "audio_seconds"):
        d = summary[name]
        if d:
            lines.append(f"  {name}: " + "  ".join(f"{stat} {number(d[stat])}" for stat in ("min", "mean", "median", "max")))
    if summary["audio_seconds"]:
        lines.append(f"  audio total: {number(summary['audio_hours'])} h")
    resized = _resized_line(summary)
    if resized:
        lines.append(resized)
    skipped = summary["skipped_when_prepared"]
    if skipped is None:
        lines.append("  skipped when prepared: unknown (no stats.json)")
    else:
        lines.append("  skipped when prepared: " + (", ".join(f"{number(n)} {r}" for r, n in skipped.items()) or "none"))
    if summary["read_failures_by_reason"]:
        lines.append("  entries that do not decode: " + ", ".join(f"{n} {r}" for r, n in summary["read_failures_by_reason"].items()))
    lines += [f"  read problem: {p}" for p in summary["read_problems"]]
    if summary["sizes_written"]:
        lines.append(f"  wrote {summary['sizes_written']} ({summary['samples']} samples counted)")
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
