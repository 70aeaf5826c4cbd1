"""PNG plots of a task's result: per-class accuracy (with the top-1 over all items and its bootstrap interval when
the result has one), or for multi-label data per-class average precision (with mAP and its interval; no other plot
shows a metric that has an interval), confusion matrix, a sample similarity matrix and a 2-D projection of the
embeddings coloured by class (or by modality when the items have no classes).

`figures` builds them as Figure objects (so their layout can be checked before anything is written) and
`write_plots` saves them. Figures are drawn on matplotlib's file-only Agg canvas, so no display is needed, and
with constrained layout, which moves the axes so that every title, label and legend fits on the figure.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mmcl.eval.run import TaskOutput

DPI = 110
FONT_POINTS = 10  # matplotlib's default text size, which titles are wrapped for
TICK_CHARS = 28  # item and class names on axes are cut to this many characters
MAX_TICKED_CLASSES = 40  # a confusion matrix with more classes has unlabelled axes: the names overlap into noise
MAX_LEGEND_CLASSES = 20  # beyond this many classes the projection shows a colour bar instead of a legend
MARKERS = ("o", "^", "s", "D")


def projection_2d(embeddings: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All modalities projected on the first two principal axes of their union; signs fixed for determinism."""
    stacked = torch.cat(list(embeddings.values())).double()
    centred = stacked - stacked.mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2].T
    axes = axes * axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)).sign()
    points = (centred @ axes).split([e.shape[0] for e in embeddings.values()])
    return dict(zip(embeddings, points))


def _figure(width: float, height: float, title: str) -> tuple[Figure, object]:
    """A figure with one axes and `title` wrapped to the figure's width (a long title is not cut at the edge)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    chars = int(width * 72 / (0.6 * FONT_POINTS))  # 72 points an inch; a character is about 0.6 em wide
    fig.suptitle(textwrap.fill(title, chars), fontsize=FONT_POINTS)
    return fig, fig.add_subplot()


def _short(name: str) -> str:
    """A long name cut in the middle: keys differ at the end (file names), class names often at the start."""
    if len(name) <= TICK_CHARS:
        return name
    head = (TICK_CHARS - 1) // 2
    return name[:head] + "…" + name[-(TICK_CHARS - 1 - head):]


def per_class_accuracy(result: dict) -> Figure:
    """Top-1 per class, each class named with its item count, against uniform chance and the majority class; with
    a bootstrap interval for top-1, the top-1 over all items as a line in a band spanning its interval."""
    names, metrics = result["classnames"], result["metrics"]
    recalls, counts = metrics["per_class_recall"], metrics["class_counts"]
    fig, ax = _figure(max(7.0, 0.3 * len(names) + 3), 5, f"{result['name']}: per-class top-1 accuracy "
                      f"({metrics['num_samples']} {result['modality']} items, {len(names)} classes)")
    ax.bar(range(len(names)), [r if r is not None else 0 for r in recalls], color="tab:blue")
    ax.axhline(metrics["chance_top1"], color="grey", linestyle="--",
               label=f"uniform chance {metrics['chance_top1']:.3f}")
    largest = counts.index(max(counts))
    ax.axhline(metrics["majority_top1"], color="tab:red", linestyle=":",
               label=f"majority class {metrics['majority_top1']:.3f}\n(always {_short(names[largest])!r})")
    interval = result.get("intervals", {}).get("top1")
    if interval:
        ax.axhline(metrics["top1"], color="tab:green")
        ax.axhspan(*interval, color="tab:green", alpha=0.2, label=f"top-1, all items {metrics['top1']:.3f}\n"
                   f"{100 * result['bootstrap']['level']:g}% interval [{interval[0]:.3f}, {interval[1]:.3f}]")
    _per_class_axes(ax, names, counts, "items", "top-1 accuracy")
    return fig


def per_class_average_precision(result: dict) -> Figure:
    """Multi-label: AP per class, each class named with its positive items (a class without any has no bar), against
    the prevalence mAP a random ranking approaches; mAP as a line, in a band spanning its bootstrap interval if any."""
    names, metrics = result["classnames"], result["metrics"]
    aps, positives = metrics["per_class_ap"], metrics["class_positives"]
    fig, ax = _figure(max(7.0, 0.3 * len(names) + 3), 5, f"{result['name']}: per-class average precision "
                      f"({metrics['num_samples']} {result['modality']} items, {metrics['num_scored_classes']} of "
                      f"{len(names)} classes with positives)")
    ax.bar(range(len(names)), [a if a is not None else 0 for a in aps], color="tab:blue")
    ax.axhline(metrics["prevalence_mAP"], color="grey", linestyle="--",
               label=f"prevalence mAP {metrics['prevalence_mAP']:.3f}\n(random ranking)")
    interval = result.get("intervals", {}).get("mAP")
    label = f"mAP {metrics['mAP']:.3f}" + (f"\n{100 * result['bootstrap']['level']:g}% interval "
                                          f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
    ax.axhline(metrics["mAP"], color="tab:green", label=label)
    if interval:
        ax.axhspan(*interval, color="tab:green", alpha=0.2)
    _per_class_axes(ax, names, positives, "positive items", "average precision")
    return fig


def _per_class_axes(ax, names: list[str], counts: list[int], counted: str, ylabel: str) -> None:
    """A per-class bar chart's axes: each class named with its count, a 0..1 scale, the legend beside the plot."""
    ax.set_xticks(range(len(names)), [f"{_short(n)} ({c})" for n, c in zip(names, counts)], rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"class ({counted})")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)


def confusion(result: dict) -> Figure:
    matrix = torch.tensor(result["metrics"]["confusion_matrix"], dtype=torch.float64)
    rates = matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)
    names = result["classnames"]
    # Named axes need room per class; beyond MAX_TICKED_CLASSES they go unnamed and a larger map only costs time.
    size = max(6.0, 0.25 * len(names) + 3) if len(names) <= MAX_TICKED_CLASSES else 9.0
    fig, ax = _figure(size + 1, size, f"{result['name']}: confusion matrix (each true class's row sums to 1)")
    image = ax.imshow(rates.numpy(), cmap="viridis", vmin=0, vmax=1)
    if len(names) <= MAX_TICKED_CLASSES:
        short = [_short(n) for n in names]
        ax.set_xticks(range(len(names)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), short, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="share of the true class")
    return fig


def similarity(output: TaskOutput) -> Figure:
    """The sample score matrix, square, with each row and column named (item keys, class names)."""
    s = output.similarity
    fig, ax = _figure(8, 8, f"{output.result['name']}: cosine similarity of {s.rows} (rows) and {s.columns} "
                      f"(columns), {s.sample}")
    image = ax.imshow(s.matrix.numpy(), cmap="magma", aspect="equal")
    ax.set_xticks(range(len(s.column_names)), [_short(n) for n in s.column_names], rotation=90, fontsize=6)
    ax.set_yticks(range(len(s.row_names)), [_short(n) for n in s.row_names], fontsize=6)
    ax.set_xlabel(s.columns)
    ax.set_ylabel(s.rows)
    fig.colorbar(image, ax=ax, label="cosine similarity", shrink=0.8)
    return fig


def projection(output: TaskOutput) -> Figure:
    """Every modality's sample on the first two principal axes: a marker per modality, a colour per class."""
    fig, ax = _figure(9, 6, f"{output.result['name']}: embeddings on their first two principal axes")
    points = projection_2d(output.embeddings)
    names = output.classnames if output.classes else None
    colours = colormaps["tab20" if names and len(names) <= MAX_LEGEND_CLASSES else "turbo"]
    top = max(len(names) - 1, 1) if names else 1  # class index at the top of the colour scale
    handles, scatter = [], None
    for i, ((modality, xy), marker) in enumerate(zip(points.items(), MARKERS)):
        colour = ({"c": output.classes[modality].numpy(), "cmap": colours, "vmin": 0, "vmax": top} if names
                  else {"color": f"C{i}"})
        scatter = ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=12, alpha=0.7, marker=marker, **colour)
        handles.append(Line2D([], [], marker=marker, linestyle="", color="grey" if names else f"C{i}",
                              label=f"{modality} ({xy.shape[0]})"))
    if names and len(names) <= MAX_LEGEND_CLASSES:
        handles += [Line2D([], [], marker="o", linestyle="", color=colours(c / top),
                           label=_short(n)) for c, n in enumerate(names)]
    elif names:
        fig.colorbar(scatter, ax=ax, label=f"class index (0-{len(names) - 1})")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7,
              title="marker: modality" + (", colour: class" if names else ""), title_fontsize=7)
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    return fig


def figures(output: TaskOutput) -> dict[str, Figure]:
    """Every plot this task's result supports, by plot name, not yet saved."""
    out = {}
    if "per_class_recall" in output.result["metrics"]:  # a single-label classifier: one right class per item
        out["per_class_accuracy"] = per_class_accuracy(output.result)
        out["confusion_matrix"] = confusion(output.result)
    if "per_class_ap" in output.result["metrics"]:
        out["per_class_ap"] = per_class_average_precision(output.result)
    if output.similarity is not None:
        out["similarity"] = similarity(output)
    if len(output.embeddings) >= 2:
        out["projection"] = projection(output)
    return out


def write_plots(output: TaskOutput, folder: str | Path) -> list[Path]:
    """Every plot of `figures`, as `folder/<task name>-<plot>.png`: the whole figure at its own resolution."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", output.result["name"])
    written = []
    for plot, fig in figures(output).items():
        written.append(folder / f"{stem}-{plot}.png")
        fig.savefig(written[-1], dpi=DPI, bbox_inches=fig.bbox_inches)  # not cropped, whatever matplotlibrc says
    return written
