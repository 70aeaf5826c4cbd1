"""Acceptance of the report plots: every title, axis label, tick label and legend entry is there and lies wholly
inside the saved image; points are coloured by class; the similarity map is square and names its rows and columns;
per-class accuracy shows each class's count and the majority-class rate."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from matplotlib.collections import PathCollection
from matplotlib.text import Text
from PIL import Image

from data_tools import demo_shapes
from mmcl.eval import EvalConfig, TaskOutput, evaluate_task
from mmcl.eval.plots import figures, write_plots
from mmcl.eval.run import Similarity
from mmcl.eval.zeroshot import classification_metrics
from mmcl.models import create_model
from tests.test_eval_audio import one_thread  # noqa: F401 (an autouse fixture)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, TaskOutput]:
    """Zero-shot and labelled retrieval outputs of a tiny model on 24 shape images, and a synthetic 30-class
    output with long class and item names (the hardest case for fitting text)."""
    root = tmp_path_factory.mktemp("plots")
    classes = demo_shapes.write_class_folders(root / "classes", per_class=2, seed=1)
    rows = [{"image": str(p), "text": f"a {p.parent.name}", "label": p.parent.name.replace("_", " ")}
            for p in sorted(classes.rglob("*.jpg"))]
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    model, transforms, tokenizer = create_model("tiny")
    tasks = EvalConfig.model_validate({"tasks": [
        {"type": "zeroshot_classification", "data": {"path": str(classes)}},
        {"type": "retrieval", "data": {"path": str(root / "captions.jsonl")}}]}).tasks
    out = {task.label: evaluate_task(model, transforms.eval, tokenizer, task) for task in tasks}
    out["synthetic"] = synthetic_output()
    return out


def synthetic_output(classes: int = 30) -> TaskOutput:
    """Three items per class and three more of class 0 (so the majority class differs from uniform chance)."""
    names = [f"class {c} with a rather long descriptive name for a plot axis" for c in range(classes)]
    labels = torch.cat([torch.zeros(3, dtype=torch.long), torch.arange(classes).repeat_interleave(3)])
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(len(labels), 8), dim=-1)
    prompts = F.normalize(torch.randn(classes, 8), dim=-1)
    result = {"task": "zeroshot_classification", "name": "a task with a long name/" + "x" * 60, "modality": "image",
              "classnames": names, "metrics": classification_metrics(queries, prompts, labels)}
    keys = [f"some/deeply/nested/folder/item-{i:05d}" for i in range(classes)]
    first = [0, *range(6, len(labels), 3)]  # the first item of each class
    return TaskOutput(result, {"image": queries, "text (class prompts)": prompts},
                      {"image": labels, "text (class prompts)": torch.arange(classes)}, names,
                      Similarity(queries[first] @ prompts.T, "image", "class prompts", keys, names,
                                 f"the first image of each of {classes} classes"))


def drawn_texts(fig) -> list[Text]:
    """The figure's visible, non-empty texts, less tick labels of ticks outside the axis range (never drawn)."""
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(1.0, abs(low), abs(high))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    undrawn |= {tick.label1, tick.label2}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t not in undrawn]


def tick_texts(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


def check_fits(fig, path) -> list[str]:
    """Every drawn text lies inside the saved image (whose size must be the figure's: the plots are saved whole,
    at the figure's resolution); returns the texts."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    saved = Image.open(path).size
    assert saved == (round(fig.bbox.width), round(fig.bbox.height))
    texts = drawn_texts(fig)
    for text in texts:
        box = text.get_window_extent(renderer)
        assert (box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= saved[0] + 0.5 and box.y1 <= saved[1] + 0.5), \
            f"{path.name}: {text.get_text()!r} at {box} is cut off the {saved} image"
    return [t.get_text() for t in texts]


@pytest.mark.parametrize("task", ["zeroshot_classification/image", "retrieval/image-text", "synthetic"])
def test_every_text_of_every_plot_is_present_and_inside_the_image(outputs, task, tmp_path):
    output = outputs[task]
    written = write_plots(output, tmp_path)
    figs = figures(output)
    assert sorted(p.name for p in written) == sorted(f"{written[0].name.rsplit('-', 1)[0]}-{n}.png" for n in figs)
    for (plot, fig), path in zip(figs.items(), written):
        texts = check_fits(fig, path)
        title = fig.get_suptitle()
        assert title.replace("\n", " ").startswith(f"{output.result['name']}: ") and title in texts, plot
        assert fig.axes[0].get_xlabel() in texts and fig.axes[0].get_ylabel() in texts, plot
        if fig.axes[0].get_legend() is not None:
            assert all(t.get_text() in texts for t in fig.axes[0].get_legend().get_texts()), plot


def test_projection_colours_points_by_class_with_the_legend_outside_the_data(outputs):
    output = outputs["zeroshot_classification/image"]
    fig = figures(output)["projection"]
    fig.canvas.draw()
    ax = fig.axes[0]
    images, prompts = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert images.get_array().tolist() == output.classes["image"].tolist() == [c for c in range(12) for _ in "ab"]
    assert prompts.get_array().tolist() == list(range(12))  # each class's prompt in its class's colour
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["image (24)", "text (class prompts) (12)", *sorted(demo_shapes.classnames())]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # right of the axes, not over points

    retrieval = figures(outputs["retrieval/image-text"])["projection"].axes[0]
    assert [c.get_array().tolist() for c in retrieval.collections] == [[c for c in range(12) for _ in "ab"]] * 2

    many = figures(outputs["synthetic"])["projection"]  # 30 classes: a colour bar instead of 30 legend entries
    assert many.axes[1].get_ylabel() == "class index (0-29)"
    assert [t.get_text() for t in many.axes[0].get_legend().get_texts()] == ["image (93)", "text (class prompts) (30)"]


def test_similarity_is_square_with_named_rows_and_columns_and_a_whole_title(outputs):
    output = outputs["zeroshot_classification/image"]
    fig = figures(output)["similarity"]
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    assert math.isclose(box.width, box.height, rel_tol=0.01)
    names = sorted(demo_shapes.classnames())
    assert tick_texts(ax.xaxis) == names  # one column per class, named
    assert tick_texts(ax.yaxis) == [f"{n.replace(' ', '_')}/00000" for n in names]  # each class's first image
    assert fig.get_suptitle().replace("\n", " ") == ("zeroshot_classification/image: cosine similarity of image "
                                                     "(rows) and class prompts (columns), the first image of each "
                                                     "of 12 classes")
    long_names = figures(outputs["synthetic"])["similarity"].axes[0]  # cut to fit, but still told apart
    for axis in (long_names.xaxis, long_names.yaxis):
        assert len(set(tick_texts(axis))) == 30 and max(map(len, tick_texts(axis))) < 30
    retrieval = figures(outputs["retrieval/image-text"])["similarity"].axes[0]
    keys = [f"captions.jsonl:{i}" for i in range(1, 25)]
    assert tick_texts(retrieval.xaxis) == keys and tick_texts(retrieval.yaxis) == keys


def test_per_class_accuracy_shows_counts_and_the_majority_class(outputs):
    output = outputs["synthetic"]
    ax = figures(output)["per_class_accuracy"].axes[0]
    ticks = tick_texts(ax.xaxis)
    assert ticks[0].endswith(" (6)") and all(t.endswith(" (3)") for t in ticks[1:]) and len(ticks) == 30
    lines = {line.get_label().split()[0]: line.get_ydata()[0] for line in ax.get_lines()}
    assert lines == {"uniform": pytest.approx(1 / 30), "majority": pytest.approx(6 / 93)}
