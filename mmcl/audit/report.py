"""What an audit writes: the per-sample scores as Parquet, and a Markdown report of the most suspicious samples with
thumbnails and captions, and how well each score finds the poisoned samples when they are known."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from mmcl.audit.metrics import ranks
from mmcl.data.image import ImageLimits, decode
from mmcl.eval.datasets import RawItem

THUMBNAIL_SIDE = 96
THUMBNAILS = "thumbnails"
REPORT = "report.md"
METRICS = "metrics.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target and rename: a killed audit never leaves half a file that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def score_table(keys: list[tuple[str, str]], scores: dict[str, torch.Tensor], poisoned: torch.Tensor | None):
    """One row per sample: key, shard, each score, its rank (`rank_<score>`, 1 = most suspicious) and, when the
    poisoned samples are known, `poisoned`."""
    import pyarrow

    columns = {"key": [k for _, k in keys], "shard": [s for s, _ in keys]}
    columns.update({name: score.numpy() for name, score in scores.items()})
    columns.update({f"rank_{name}": ranks(score).numpy() for name, score in scores.items()})
    if poisoned is not None:
        columns["poisoned"] = poisoned.numpy()
    return pyarrow.table(columns)


def write_parquet(table, path: Path) -> None:
    import pyarrow
    import pyarrow.parquet

    out = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(table, out)
    write_atomic(path, out.getvalue().to_pybytes())


def thumbnail(item: RawItem) -> bytes | None:
    """A small PNG of the item's image; None for an item without one."""
    if "image" not in item.media:
        return None
    image = decode(item.media["image"], ImageLimits(), THUMBNAIL_SIDE)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(folder: Path, header: list[str], metrics: dict | None, keys: list[tuple[str, str]],
                 scores: dict[str, torch.Tensor], poisoned: torch.Tensor | None, items: dict[tuple[str, str], RawItem],
                 top: int) -> Path:
    """folder/report.md: `header` lines, the detection metrics (also folder/metrics.json), then each score's `top`
    samples with a thumbnail (folder/thumbnails/ROW.png) and caption from `items`. Thumbnails of an earlier audit
    into the same folder are removed first: ROW numbers another sample now."""
    for stale in (folder / THUMBNAILS).glob("*.png"):
        stale.unlink()
    lines = [f"# Audit of {len(keys)} samples", "", *header, ""]
    if metrics is not None:
        names = [n for n in next(iter(metrics.values())) if n != "auroc"]
        lines += ["## Finding the poisoned samples", "", "| score | AUROC | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 2) + "|"]
        for score, values in metrics.items():
            auroc = "n/a" if values["auroc"] is None else f"{values['auroc']:.3f}"
            lines.append(f"| {score} | {auroc} | " + " | ".join(f"{values[n]:.3f}" for n in names) + " |")
        lines.append("")
        write_atomic(folder / METRICS, (json.dumps(metrics, indent=2) + "\n").encode())
    written: set[int] = set()
    for name, score in scores.items():
        lines += [f"## Top {min(top, len(keys))} by {name}", "",
                  "| rank | shard | key | score | " + ("poisoned | " if poisoned is not None else "")
                  + "thumbnail | caption |", "|---" * (6 + (poisoned is not None)) + "|"]
        for rank, row in enumerate(torch.sort(score, descending=True, stable=True).indices[:top].tolist(), start=1):
            item = items.get(keys[row])
            picture = ""
            if item is not None and row not in written and (png := thumbnail(item)) is not None:
                write_atomic(folder / THUMBNAILS / f"{row}.png", png)
                written.add(row)
            if row in written:
                picture = f"![]({THUMBNAILS}/{row}.png)"
            caption = _cell(item.captions[0]) if item is not None and item.captions else ""
            flag = ("yes | " if poisoned[row] else "no | ") if poisoned is not None else ""
            lines.append(f"| {rank} | {_cell(keys[row][0])} | {_cell(keys[row][1])} | {score[row].item():.4g} | "
                         f"{flag}{picture} | {caption} |")
        lines.append("")
    write_atomic(folder / REPORT, "\n".join(lines).encode("utf-8"))
    return folder / REPORT
