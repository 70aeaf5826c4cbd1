"""PNG plots of a task's result: per-class accuracy, confusion matrix, a sample similarity matrix and a 2-D
projection of the embeddings coloured by modality. Matplotlib's file-only backend, so no display is needed."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402

from mmcl.eval.run import TaskOutput  # noqa: E402


def projection_2d(embeddings: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All modalities projected on the first two principal axes of their union; signs fixed for determinism."""
    stacked = torch.cat(list(embeddings.values())).double()
    centred = stacked - stacked.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].T
    axes = axes * axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)).sign()
    points = (centred @ axes).split([e.shape[0] for e in embeddings.values()])
    return dict(zip(embeddings, points))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_class_accuracy(result: dict, path: Path) -> Path:
    names, recalls = result["classnames"], result["metrics"]["per_class_recall"]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names)), 4))
    ax.bar(range(len(names)), [r if r is not None else 0 for r in recalls], color="tab:blue")
    ax.axhline(result["metrics"]["chance_top1"], color="grey", linestyle="--", label="chance")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{result['name']}: per-class accuracy")
    ax.legend()
    return _save(fig, path)


def _confusion(result: dict, path: Path) -> Path:
    matrix = torch.tensor(result["metrics"]["confusion_matrix"], dtype=torch.float64)
    rates = matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)
    names = result["classnames"]
    size = max(5, 0.25 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates.numpy(), cmap="viridis", vmin=0, vmax=1)
    if len(names) <= 40:  # beyond that the labels overlap into noise
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['name']}: confusion (row-normalised)")
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def _similarity(output: TaskOutput, path: Path) -> Path:
    matrix, rows, cols = output.similarity
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(matrix.numpy(), cmap="magma")
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    ax.set_title(f"{output.result['name']}: cosine similarity, first {matrix.shape[0]} items")
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def _projection(output: TaskOutput, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    for modality, points in projection_2d(output.embeddings).items():
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=6, alpha=0.6, label=f"{modality} ({points.shape[0]})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{output.result['name']}: embeddings, first two principal axes")
    ax.legend()
    return _save(fig, path)


def write_plots(output: TaskOutput, folder: str | Path) -> list[Path]:
    """Every plot this task's result supports, as `folder/<task name>-<plot>.png`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", output.result["name"])
    written = []
    if output.result["task"] == "zeroshot_classification":
        written.append(_per_class_accuracy(output.result, folder / f"{stem}-per_class_accuracy.png"))
        written.append(_confusion(output.result, folder / f"{stem}-confusion_matrix.png"))
    if output.similarity is not None:
        written.append(_similarity(output, folder / f"{stem}-similarity.png"))
    if len(output.embeddings) >= 2:
        written.append(_projection(output, folder / f"{stem}-projection.png"))
    return written
