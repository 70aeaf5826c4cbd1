"""Bootstrap confidence intervals (`eval.bootstrap`): the vectorised resampling against a plain loop that recomputes
each metric with mmcl's own metric functions on the same draws, against an independent numpy bootstrap, the
analytic [1, 1] of a perfect model, width against level, determinism, degenerate input, config validation, and the
intervals in the result JSON, Markdown summary, `--compare` and the `mmcl eval --bootstrap` flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmcl.config import ConfigError, validate
from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.bootstrap import ItemHits, intervals, resample_indices
from mmcl.eval.compare import compare
from mmcl.eval.metrics import mean_per_class_recall, topk_accuracy
from mmcl.eval.retrieval import rank_summary, recall_hits
from mmcl.eval.summary import markdown
from mmcl.eval.tasks import BootstrapConfig
from mmcl.eval.zeroshot import classification_hits
from mmcl.training.config import PeriodicEvalConfig
from mmcl.training.periodic_eval import PeriodicEvaluator
from pipelines.cli import main as mmcl
from tests.test_eval_audio import one_thread, tone_model, write_tones  # noqa: F401 (one_thread: autouse fixture)

SETTINGS = BootstrapConfig(samples=300, seed=3, level=0.9)


def classification_case(num_items: int = 60, num_classes: int = 8, seed: int = 0):
    """Scores [N, C] of a middling classifier and labels where one class has a single item, so that many
    resamples lack it."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes - 1, (num_items,), generator=generator)
    labels[0] = num_classes - 1
    scores = torch.rand(num_items, num_classes, generator=generator)
    scores[torch.arange(num_items), labels] += 0.6 * torch.rand(num_items, generator=generator)
    return scores, labels


def loop_reference(drawn_rows, metric) -> np.ndarray:
    """[low, high] of `metric(indices)` over the drawn rows, one resample at a time, by numpy's quantile."""
    values = [metric(row) for chunk in drawn_rows for row in chunk]
    return np.quantile(values, [(1 - SETTINGS.level) / 2, (1 + SETTINGS.level) / 2])


def test_classification_intervals_equal_a_loop_recomputing_mmcls_metrics_on_the_same_draws():
    scores, labels = classification_case()
    found = intervals([classification_hits(scores, labels)], SETTINGS)
    draws = list(resample_indices(len(labels), SETTINGS.samples, SETTINGS.seed))
    assert sum(len(chunk) for chunk in draws) == SETTINGS.samples
    assert any((labels[row] != 7).all() for chunk in draws for row in chunk)  # the rare class is absent in some
    for key, metric in [("top1", lambda i: topk_accuracy(scores[i], labels[i], 1)),
                        ("top5", lambda i: topk_accuracy(scores[i], labels[i], 5)),
                        ("mean_per_class_recall", lambda i: mean_per_class_recall(scores[i], labels[i], 8))]:
        assert found[key] == pytest.approx(loop_reference(draws, metric), abs=1e-6), key  # mmcl: float32 means


def test_retrieval_intervals_equal_a_loop_over_each_directions_queries():
    generator = torch.Generator().manual_seed(1)
    direction_ranks = {"image_to_text": torch.randint(1, 12, (40,), generator=generator),
                       "text_to_image": torch.randint(1, 30, (90,), generator=generator)}
    found = intervals(recall_hits(direction_ranks, (1, 5)), SETTINGS)
    assert sorted(found) == ["image_to_text/recall@1", "image_to_text/recall@5", "text_to_image/recall@1",
                             "text_to_image/recall@5"]
    for direction, ranks in direction_ranks.items():
        draws = list(resample_indices(len(ranks), SETTINGS.samples, SETTINGS.seed))
        for k in (1, 5):
            reference = loop_reference(draws, lambda i: rank_summary(ranks[i], (k,))[f"recall@{k}"])
            assert found[f"{direction}/recall@{k}"] == pytest.approx(reference, abs=1e-12)


def test_top1_interval_agrees_with_an_independent_numpy_bootstrap_and_the_normal_approximation():
    hits = torch.rand(500, generator=torch.Generator().manual_seed(2)) < 0.7
    low, high = intervals([ItemHits({"top1": hits})], BootstrapConfig(samples=2000, level=0.95))["top1"]
    rng = np.random.default_rng(12345)
    values = hits.numpy()[rng.integers(0, 500, size=(2000, 500))].mean(axis=1)
    assert [low, high] == pytest.approx(np.quantile(values, [0.025, 0.975]), abs=0.01)
    p = hits.double().mean().item()
    half_width = 1.96 * (p * (1 - p) / 500) ** 0.5
    assert [low, high] == pytest.approx([p - half_width, p + half_width], abs=0.01)
    assert low < p < high  # the point estimate lies inside


def test_all_items_right_give_one_one_and_a_higher_level_a_wider_interval():
    labels = torch.arange(20) % 4
    perfect = torch.nn.functional.one_hot(labels, 5).float()
    assert intervals([classification_hits(perfect, labels)], SETTINGS) == {
        "top1": [1.0, 1.0], "top5": [1.0, 1.0], "mean_per_class_recall": [1.0, 1.0]}
    scores, labels = classification_case(num_items=200)
    narrow = intervals([classification_hits(scores, labels)], BootstrapConfig(samples=500, level=0.5))
    wide = intervals([classification_hits(scores, labels)], BootstrapConfig(samples=500, level=0.99))
    point = topk_accuracy(scores, labels, 1)
    for key in narrow:
        assert wide[key][0] < narrow[key][0] <= narrow[key][1] < wide[key][1], key
    assert narrow["top1"][0] <= point <= narrow["top1"][1]


def test_the_same_seed_gives_the_same_intervals_whatever_the_chunking():
    scores, labels = classification_case()
    items = [classification_hits(scores, labels)]
    first = intervals(items, SETTINGS)
    assert intervals(items, SETTINGS) == first
    assert intervals(items, SETTINGS, budget=7 * len(labels) + 5) == first  # 7 resamples a chunk
    assert intervals(items, SETTINGS.model_copy(update={"seed": 4})) != first


def test_no_items_is_an_error_not_a_nan():
    empty = ItemHits({"image_to_text/recall@1": torch.zeros(0, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no items to resample for image_to_text/recall@1"):
        intervals([empty], SETTINGS)


@pytest.mark.parametrize("bootstrap, problem", [
    ({"level": 0}, "bootstrap.level"), ({"level": 1}, "bootstrap.level"), ({"level": 1.5}, "bootstrap.level"),
    ({"samples": 99}, "bootstrap.samples"), ({"seed": -1}, "bootstrap.seed"), ({"sample": 1000}, "unknown key")])
def test_bad_bootstrap_settings_are_refused(bootstrap, problem):
    with pytest.raises(ConfigError, match=problem):
        validate(EvalConfig, {"tasks": [], "bootstrap": bootstrap}, "test")


def test_bootstrap_is_off_by_default_and_an_empty_section_takes_the_documented_defaults():
    assert validate(EvalConfig, {"tasks": []}, "test").bootstrap is None
    assert validate(EvalConfig, {"tasks": [], "bootstrap": {}}, "test").bootstrap == BootstrapConfig(
        samples=1000, seed=0, level=0.95)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Tones in class folders, and a manifest captioning each clip with its class."""
    root = write_tones(tmp_path_factory.mktemp("bootstrap") / "folders")
    rows = [{"audio": str(p.relative_to(root)), "text": f"a {p.parent.name} tone"} for p in sorted(root.rglob("*.wav"))]
    (root / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def run(task: dict, bootstrap: BootstrapConfig | None) -> dict:
    model, transforms, tokenizer = tone_model()
    (task,) = EvalConfig.model_validate({"tasks": [task]}).tasks
    return evaluate_task(model, transforms, tokenizer, task, bootstrap=bootstrap).result


def test_results_carry_intervals_beside_metrics_and_the_summary_and_compare_show_them(tones):
    classification = {"type": "zeroshot_classification", "modality": "audio", "data": {"path": str(tones)}}
    plain = run(classification, None)
    assert "intervals" not in plain and "bootstrap" not in plain  # off: results as before
    result = run(classification, SETTINGS)
    assert list(result)[:5] == ["task", "name", "metrics", "intervals", "bootstrap"]
    assert result["metrics"] == plain["metrics"]
    assert result["metrics"]["top1"] == 1.0  # the tone model is right on every clip (3 classes: no top-5)
    assert result["intervals"] == {"top1": [1.0, 1.0], "mean_per_class_recall": [1.0, 1.0]}
    assert result["bootstrap"] == {"samples": 300, "seed": 3, "level": 0.9,
                                   "method": "percentile bootstrap over the evaluation items (queries), resampled "
                                             "with replacement"}

    clips = {"path": str(tones / "clips.jsonl")}
    retrieval = run({"type": "retrieval", "modalities": ["audio", "text"], "data": clips}, SETTINGS)
    assert sorted(retrieval["intervals"]) == sorted(f"{d}/{m}" for d in ("audio_to_text", "text_to_audio")
                                                    for m in ("recall@1", "recall@5", "recall@10", "mAP@10"))
    for key, (low, high) in retrieval["intervals"].items():
        direction, metric = key.split("/")
        assert low <= retrieval["metrics"][direction][metric] <= high, key

    geometry = run({"type": "geometry", "modalities": ["audio", "text"], "data": clips}, SETTINGS)
    assert "intervals" not in geometry and "bootstrap" not in geometry  # no geometry measure gets one

    summary = markdown([result, retrieval], "tones")
    assert "| top1 | 1.0000 [1.0000, 1.0000] |" in summary
    assert "| num_samples | 12 |" in summary  # metrics without an interval as before
    low, high = retrieval["intervals"]["audio_to_text/recall@1"]
    value = retrieval["metrics"]["audio_to_text"]["recall@1"]
    assert f"| audio_to_text/recall@1 | {value:.4f} [{low:.4f}, {high:.4f}] |" in summary
    assert "\n[low, high]: 90% percentile-bootstrap interval over the items, 300 resamples, seed 3.\n" in summary

    worse = json.loads(json.dumps(result))
    worse["metrics"]["top1"], worse["intervals"]["top1"] = 0.5, [0.4, 0.6]
    rows = {line.split()[0]: line for line in compare([result], [worse], ("a", "b")).splitlines()}
    assert rows["metric"].endswith("intervals overlap")
    assert rows["zeroshot_classification/audio/top1"].endswith("-0.5000  no")
    assert rows["zeroshot_classification/audio/mean_per_class_recall"].endswith("+0.0000  yes")
    assert rows["zeroshot_classification/audio/num_samples"].endswith("+0  —")  # no interval: nothing to say
    assert "intervals overlap" not in compare([plain], [plain], ("a", "b"))  # the column only with intervals
    other_level = json.loads(json.dumps(worse))
    other_level["bootstrap"]["level"] = 0.95
    assert "intervals are at different levels: A 0.9, B 0.95" in compare([result], [other_level], ("a", "b"))


def test_the_eval_flag_adds_intervals_and_refuses_too_few_resamples(tones, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert mmcl(["eval", "tiny-audio", "--data", str(tones), "--modality", "audio", "--bootstrap", "200",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["bootstrap"]["samples"] == 200 and result["bootstrap"]["level"] == 0.95
    assert set(result["intervals"]) == {"top1", "mean_per_class_recall"}
    assert mmcl(["eval", "tiny-audio", "--data", str(tones), "--modality", "audio", "--bootstrap", "50"]) == 2
    assert "bootstrap.samples" in capsys.readouterr().err

    tasks = tmp_path / "tasks.yaml"  # a task file's level and seed stay; the flag sets the resamples
    tasks.write_text(f"tasks: [{{type: zeroshot_classification, modality: audio, data: {{path: {tones}}}}}]\n"
                     "bootstrap: {level: 0.8, seed: 5}\n")
    assert mmcl(["eval", "tiny-audio", "--tasks", str(tasks), "--bootstrap", "100", "--output", str(out)]) == 0
    recorded = json.loads(out.read_text())["bootstrap"]
    assert (recorded["samples"], recorded["level"], recorded["seed"]) == (100, 0.8, 5)


def test_periodic_evaluation_passes_its_bootstrap_settings_on(tmp_path):
    cfg = PeriodicEvalConfig(tasks=[{"type": "zeroshot_classification", "name": "shapes", "data": {"path": "unused"}}],
                             every=1, bootstrap={"samples": 100})
    seen = []

    def run_tasks(*args, **kwargs):
        seen.append(kwargs["bootstrap"])
        return {"shapes": {"task": "zeroshot_classification", "name": "shapes", "metrics": {"top1": 0.5}}}

    PeriodicEvaluator(cfg, None, {}, None, device="cpu", out_dir=None, rank=0, world_size=1,
                      broadcast=lambda x: x, run=run_tasks)(1)
    assert seen == [BootstrapConfig(samples=100)]


def test_the_per_class_plot_shows_top1_in_a_band_spanning_its_interval(tones, tmp_path):
    from mmcl.eval.plots import per_class_accuracy  # matplotlib: imported only by the test that draws
    from tests.test_eval_plots import check_fits

    result = run({"type": "zeroshot_classification", "modality": "audio", "data": {"path": str(tones)}}, SETTINGS)
    result["metrics"]["top1"], result["intervals"]["top1"] = 0.75, [0.5, 0.9]  # a band with a height to see
    fig = per_class_accuracy(result)
    fig.savefig(tmp_path / "plot.png", dpi=fig.dpi)
    label = "top-1, all items 0.750\n90% interval [0.500, 0.900]"
    assert label in check_fits(fig, tmp_path / "plot.png")
    (band,) = [p for p in fig.axes[0].patches if p.get_label() == label]
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((0.5, 0.9))
    del result["intervals"], result["bootstrap"]
    legend = per_class_accuracy(result).axes[0].get_legend().get_texts()
    assert not any("top-1, all items" in t.get_text() for t in legend)  # no interval: no band
