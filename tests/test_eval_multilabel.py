"""Multi-label evaluation: per-class average precision and mAP against scikit-learn's `average_precision_score`
(ties included, and under bootstrap weights), label lists from shards, JSON Lines and CSV manifests through zero-shot
classification and `mmcl eval`, the one-vs-rest linear probe, and the errors that name the bad row or item."""

from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from mmcl.config import validate
from mmcl.data.label import parse_labels
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.average_precision import class_average_precision, ranking, scored_multilabel, weighted_average_precision
from mmcl.eval.bootstrap import ItemScores, intervals, resample_indices
from mmcl.eval.datasets import open_source
from mmcl.eval.embed import Loading, embed_source
from mmcl.eval.label_lists import targets
from mmcl.eval.plots import DPI, per_class_average_precision
from mmcl.eval.linear_probe import fewshot_indices, fit, train_probe
from mmcl.eval.summary import headline
from mmcl.eval.table import headline_keys
from mmcl.eval.tasks import BootstrapConfig
from mmcl.eval.zeroshot import class_embeddings, class_scores
from pipelines.cli import main as mmcl
from tests.test_eval_audio import PITCHES, audio_task, one_thread, tone_model, write_tones  # noqa: F401 (a fixture)
from tests.test_eval_plots import check_fits, tick_texts

CLASSES = sorted(PITCHES)  # ["high", "low", "middle"]: class names given in a manifest are taken in sorted order
# Label lists of the clips CLASS_0, CLASS_1 of each class, in class order; the tone model hears only the clip's
# own pitch, so the extra labels and the empty list make the ranking imperfect, with ties (equal embeddings).
JSONL_LABELS = [["high"], ["high", "low"], ["low"], [], ["middle", 0], [2]]
CSV_LABELS = ["high", "high;low", "low", ";", "middle;0", "2"]  # the same lists; "2" is a plain label: a list of one
CLS_ENTRIES = ["0", "0,1", "[1]", "[]", "2 0", "[2]"]  # the same lists as shard `cls` entries
TARGETS = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 1]], dtype=torch.bool)


def sklearn_per_class(scores: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    return [average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) if targets[:, c].any() else None
            for c in range(targets.shape[1])]


def random_case(seed: int, rounding: int | None, items: int = 60, classes: int = 7):
    """Scores (rounded: many ties) and targets with one class that has no positive item."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(items, classes, generator=generator, dtype=torch.float64)
    if rounding is not None:
        scores = scores.round(decimals=rounding)
    truth = torch.rand(items, classes, generator=generator) < 0.3
    truth[:, -1] = False
    return scores, truth


@pytest.mark.parametrize("rounding", [None, 1, 0])
def test_per_class_ap_map_and_micro_ap_equal_sklearn_with_ties(rounding):
    scores, truth = random_case(0, rounding)
    if rounding == 0:
        assert scores[:, 0].unique().numel() < 10  # heavy ties
    reference = sklearn_per_class(scores, truth)
    m = scored_multilabel(scores, truth)
    assert m["per_class_ap"][-1] is None and reference[-1] is None
    assert np.allclose(m["per_class_ap"][:-1], reference[:-1], rtol=0, atol=1e-12)
    assert m["mAP"] == pytest.approx(np.mean(reference[:-1]), abs=1e-12)
    assert m["micro_ap"] == pytest.approx(average_precision_score(truth.numpy(), scores.numpy(), average="micro"),
                                          abs=1e-12)
    assert (m["num_classes"], m["num_scored_classes"], m["classes_without_positives"]) == (7, 6, 1)
    assert m["class_positives"] == truth.sum(dim=0).tolist()


def test_a_tie_shares_the_precision_at_its_end():
    # Ranked: a positive and a negative tied first (precision 1/2 for the positive), then a positive (2/3).
    scores = torch.tensor([[0.5], [0.5], [0.2], [0.1]])
    truth = torch.tensor([[True], [False], [True], [False]])
    assert class_average_precision(scores, truth).item() == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    assert average_precision_score(truth.numpy(), scores.numpy()) == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)


def test_weighted_ap_is_the_ap_of_the_items_repeated():
    scores, truth = random_case(1, rounding=1, items=25, classes=4)
    weights = torch.randint(0, 4, (5, 25), generator=torch.Generator().manual_seed(2)).double()
    got = weighted_average_precision(ranking(scores), truth, weights)
    for row, w in zip(got, weights):
        repeat = w.long().numpy()
        expected = sklearn_per_class(torch.from_numpy(np.repeat(scores.numpy(), repeat, axis=0)),
                                     torch.from_numpy(np.repeat(truth.numpy(), repeat, axis=0)))
        assert [None if math.isnan(a) else a for a in row.tolist()] == pytest.approx(expected, abs=1e-12)


def test_map_interval_equals_a_loop_recomputing_sklearn_on_the_same_draws():
    # Few positives: some resamples miss a class (left out of that resample's mean).
    scores, truth = random_case(3, rounding=1, items=30, classes=4)
    truth[:, 2] = False
    truth[[4, 17], 2] = True
    config = BootstrapConfig(samples=100, seed=5)
    (low, high), = intervals([ItemScores(scores, truth)], config, budget=300).values()  # chunks of 10 resamples
    values = []
    for drawn in torch.cat(list(resample_indices(30, 100, 5))):
        aps = [a for a in sklearn_per_class(scores[drawn], truth[drawn]) if a is not None]
        values.append(np.mean(aps))
    assert [low, high] == pytest.approx(np.quantile(values, [0.025, 0.975]).tolist(), abs=1e-12)


@pytest.mark.parametrize("entry, expected", [("3", 3), ("3,7", (3, 7)), ("3 7", (3, 7)), (" [3, 7] ", (3, 7)),
                                             ("[]", ()), (",", ()), ("[5]", (5,))])
def test_shard_cls_entries(entry, expected):
    assert parse_labels(entry.encode()) == expected


@pytest.mark.parametrize("entry", ["3;7", "[3, x]", "3,-1", ""])
def test_bad_shard_cls_entries_are_errors(entry):
    with pytest.raises(ValueError):
        parse_labels(entry)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """CLASS/CLASS_i.wav, two clips per class, with the same label lists as JSON Lines and CSV beside them, and as
    a shard in ../shards."""
    root = tmp_path_factory.mktemp("multilabel") / "clips"
    write_tones(root, per_class=2)
    clips = [f"{name}/{name}_{i}.wav" for name in CLASSES for i in range(2)]
    (root / "tags.jsonl").write_text("".join(json.dumps({"audio": c, "label": label}) + "\n"
                                             for c, label in zip(clips, JSONL_LABELS)))
    (root / "tags.csv").write_text("audio,label\n" + "".join(f"{c},{label}\n" for c, label in zip(clips, CSV_LABELS)))
    (root.parent / "shards").mkdir()
    for part in range(2):  # two parts, so that two processes share them
        with tarfile.open(root.parent / "shards" / f"tags-{part:06d}.tar", "w") as tar:
            for i in range(3 * part, 3 * part + 3):
                for ext, data in (("wav", (root / clips[i]).read_bytes()), ("cls", CLS_ENTRIES[i].encode())):
                    info = tarfile.TarInfo(f"item{i:02d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (root.parent / "shards" / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def own_scores(manifest, prompts) -> torch.Tensor:
    """The task's scores recomputed from its parts: the clips' embeddings against the recorded class prompts."""
    model, transforms, tokenizer = tone_model()
    data = embed_source(model, open_source(manifest), ["audio"], transforms, tokenizer, Loading(), need_labels=True)
    return class_scores(data.features["audio"], class_embeddings(model, tokenizer, CLASSES, prompts, "cpu"))


def test_zero_shot_on_label_lists_from_jsonl_csv_and_shards(tones):
    results = {name: evaluate_task(*tone_model(), audio_task(tones / name)).result
               for name in ("tags.jsonl", "tags.csv", "../shards")}
    result = results["tags.jsonl"]
    m = result["metrics"]
    assert result["classnames"] == CLASSES and "top1" not in m
    assert results["tags.csv"]["metrics"] == m and results["../shards"]["metrics"] == m
    scores = own_scores(tones / "tags.jsonl", result["prompts"])
    assert np.allclose(m["per_class_ap"], sklearn_per_class(scores, TARGETS), rtol=0, atol=1e-12)
    assert m["micro_ap"] == pytest.approx(average_precision_score(TARGETS.numpy(), scores.numpy(), average="micro"),
                                          abs=1e-12)
    assert (m["num_samples"], m["items_without_labels"], m["class_positives"]) == (6, 1, [3, 2, 2])
    assert m["labels_per_item"] == pytest.approx(7 / 6) and m["prevalence_mAP"] == pytest.approx(7 / 18)


def test_label_lists_gathered_from_two_processes_keep_their_items(tones, monkeypatch):
    # Each process embeds one shard and all gather: the gathering is stood in for by handing over the shares
    # captured from a first pass of each rank, the later rank's first, so that only the sort by each item's
    # position puts the label lists back beside their items.
    task = audio_task(tones.parent / "shards")
    shares = {}

    class Captured(Exception):
        pass

    def capture(rank):
        def gather(out, share):
            shares[rank] = share
            raise Captured
        return gather

    for rank in range(2):
        monkeypatch.setattr(torch.distributed, "all_gather_object", capture(rank))
        with pytest.raises(Captured):
            evaluate_task(*tone_model(), task, rank=rank, world_size=2)
    assert [len(shares[rank][1]) for rank in range(2)] == [3, 3]  # keys: three items each
    monkeypatch.setattr(torch.distributed, "all_gather_object", lambda out, share: out.__setitem__(
        slice(None), [shares[1], shares[0]]))
    shared = evaluate_task(*tone_model(), task, rank=1, world_size=2).result
    assert shared["metrics"] == evaluate_task(*tone_model(), task).result["metrics"]


def test_multilabel_true_scores_single_label_data_by_map_and_false_refuses_lists(tones):
    model, transforms, tokenizer = tone_model()
    folders = evaluate_task(model, transforms, tokenizer, audio_task(tones, multilabel=True)).result["metrics"]
    assert folders["mAP"] == 1.0 and folders["per_class_ap"] == [1.0, 1.0, 1.0]  # each tone heard as its class
    with pytest.raises(UserError, match=r"task zeroshot_classification/audio: multilabel is false but item "
                                        r"'tags.csv:2' carries a label list"):  # row 1's plain label is no list
        evaluate_task(model, transforms, tokenizer, audio_task(tones / "tags.csv", multilabel=False))


def test_a_class_without_positives_is_an_error_unless_allowed_then_null_and_counted(tones):
    names = tones / "four_classes.txt"
    names.write_text("\n".join(CLASSES + ["silence"]) + "\n")
    task = audio_task(tones / "tags.jsonl", data={"path": str(tones / "tags.jsonl"), "classnames": str(names)})
    with pytest.raises(UserError, match="four_classes.txt: lists 4 class names but the data's labels use only 3"):
        evaluate_task(*tone_model(), task)
    allowed = evaluate_task(*tone_model(), task.model_copy(update={"allow_missing_classes": True})).result["metrics"]
    assert allowed["per_class_ap"][3] is None and allowed["classes_without_positives"] == 1
    assert allowed["mAP"] == pytest.approx(np.mean(allowed["per_class_ap"][:3]), abs=1e-12)


def test_through_mmcl_eval_with_interval_summary_and_table(tones, tmp_path, capsys):
    (tmp_path / "tasks.yaml").write_text(f"""tasks:
  - {{type: zeroshot_classification, name: tags, modality: audio, data: {{path: {tones / 'tags.csv'}}}}}
""")
    out = tmp_path / "result.json"
    assert mmcl(["eval", "tiny-audio", "--tasks", str(tmp_path / "tasks.yaml"), "--output", str(out),
                 "--report-dir", str(tmp_path / "report"), "--bootstrap", "100"]) == 0
    assert "tags: zero-shot mAP: " in capsys.readouterr().out
    result = json.loads(out.read_text())
    m = result["metrics"]
    low, high = result["intervals"]["mAP"]
    assert list(result["intervals"]) == ["mAP"] and low <= m["mAP"] <= high
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"| mAP | {m['mAP']:.4f} [{low:.4f}, {high:.4f}] |" in summary
    assert "Prevalence mAP 0.3889" in summary and "Lowest per-class AP: " in summary
    assert headline_keys(result) == ["mAP"]
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "tags-per_class_ap.png", "tags-projection.png", "tags-similarity.png"]  # no top-1 plots: no one right class


def test_per_class_ap_plot_fits_long_names_and_shows_map_with_its_interval(tmp_path):
    scores, truth = random_case(4, rounding=None, items=90, classes=30)
    names = [f"class {c} with a rather long descriptive name for a plot axis" for c in range(30)]
    result = {"name": "tags/" + "x" * 60, "modality": "audio", "classnames": names,
              "metrics": scored_multilabel(scores, truth), "bootstrap": {"level": 0.95},
              "intervals": {"mAP": [0.3, 0.4]}}
    fig = per_class_average_precision(result)
    fig.savefig(tmp_path / "ap.png", dpi=DPI, bbox_inches=fig.bbox_inches)
    texts = check_fits(fig, tmp_path / "ap.png")
    assert fig.get_suptitle() in texts and "29 of 30 classes with positives" in fig.get_suptitle().replace("\n", " ")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[1] == f"mAP {result['metrics']['mAP']:.3f}\n95% interval [0.300, 0.400]" and legend[1] in texts
    assert tick_texts(fig.axes[0].xaxis)[-1].endswith("(0)")  # the class without positives, its count shown


def test_unknown_class_name_in_a_list_names_the_row(tones):
    manifest = tones / "unknown.jsonl"
    manifest.write_text("".join(json.dumps({"audio": "high/high_0.wav", "label": label}) + "\n"
                                for label in (["high"], ["low", "hihg"])))
    with pytest.raises(UserError, match=f"{manifest} row 2: label 'hihg' is not one of the class names$"):
        open_source(manifest, classnames_file=tones.parent / "shards" / "classnames.txt")


@pytest.mark.parametrize("label, message", [
    ('"high,low"', "label 'high,low' is not one of the class names \\(a label list is a JSON list in JSON Lines, "
                   "or ';'-separated in CSV/TSV\\)"),
    ("high|low", "label 'high\\|low' is not one of the class names \\(a label list"),
    ("high;;low", "label list 'high;;low' has an empty entry"),
    ("low;", "label list 'low;' has an empty entry"),
    ("low;-2", "in label list 'low;-2': label -2 is outside"),
])
def test_bad_csv_label_lists_name_the_row(tones, label, message):
    manifest = tones / "bad.csv"
    manifest.write_text(f"audio,label\nhigh/high_0.wav,high\nlow/low_0.wav,{label}\n")
    with pytest.raises(UserError, match=f"{manifest} row 2: {message}"):
        open_source(manifest, classnames_file=tones.parent / "shards" / "classnames.txt")


def test_a_wrong_separator_is_an_error_even_without_class_names(tones):
    manifest = tones / "commas.csv"
    manifest.write_text('audio,label\nhigh/high_0.wav,high;low\nlow/low_0.wav,"low,middle"\n')
    with pytest.raises(UserError, match=f"{manifest} row 2: label 'low,middle' looks like a label list with the "
                                        "wrong separator"):
        open_source(manifest)


def test_a_class_index_outside_the_class_names_names_the_item(tones):
    manifest = tones / "outside.jsonl"
    manifest.write_text("".join(json.dumps({"audio": "high/high_0.wav", "label": label}) + "\n"
                                for label in ([0], [1, 7], [2])))
    with pytest.raises(UserError, match=r"classnames.txt: lists 3 class names but item 'outside.jsonl:2' holds "
                                        r"label 7 \(labels must be 0..2\)"):
        evaluate_task(*tone_model(), audio_task(manifest, data={"path": str(manifest), "classnames": str(
            tones.parent / "shards" / "classnames.txt")}))


def test_one_vs_rest_fit_equals_sklearn_binary_logistic_regression_per_class():
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(3, 8, generator=generator, dtype=torch.float64)
    labels = torch.arange(3).repeat_interleave(30)
    features = centres[labels] + torch.randn(90, 8, generator=generator, dtype=torch.float64)
    truth = torch.nn.functional.one_hot(labels, 3).bool() | (torch.rand(90, 3, generator=generator) < 0.2)
    weight_decay = 1e-2
    weight, bias = fit(features, truth, 3, weight_decay, max_iterations=1000)
    for c in range(3):
        reference = LogisticRegression(C=1 / (90 * weight_decay), tol=1e-12, max_iter=10_000)
        reference.fit(features.numpy(), truth[:, c].numpy())
        assert weight[c].numpy() == pytest.approx(reference.coef_[0], abs=1e-4)
        assert bias[c].item() == pytest.approx(reference.intercept_[0], abs=1e-4)


def test_multilabel_fewshot_draws_k_positives_of_each_class_pooled():
    truth = torch.zeros(12, 3, dtype=torch.bool)
    truth[:6, 0] = truth[4:10, 1] = truth[10, 2] = True
    picked, short = fewshot_indices(truth, 3, k=2, seed=0)
    assert torch.equal(picked, picked.unique()) and short == 1  # class 2 has one positive
    assert (truth[picked].sum(dim=0) >= torch.tensor([2, 2, 1])).all()
    assert len(picked) <= 5 and torch.equal(fewshot_indices(truth, 3, k=2, seed=0)[0], picked)


def write_listed(root, per_class: int):
    """Tones and a JSON Lines manifest: each clip labelled with its class, every third also with the next class,
    and every fifth with nothing."""
    write_tones(root, per_class=per_class)
    rows = []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            n = c * per_class + i
            label = [] if n % 5 == 4 else [name] + ([CLASSES[(c + 1) % 3]] if n % 3 == 0 else [])
            rows.append({"audio": f"{name}/{name}_{i}.wav", "label": label})
    (root / "tags.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "tags.jsonl"


def test_linear_probe_map_equals_sklearn_on_the_probes_own_test_scores(tmp_path):
    train, test = write_listed(tmp_path / "train", 6), write_listed(tmp_path / "test", 4)
    (task,) = validate(EvalConfig, {"tasks": [{"type": "linear_probe", "modality": "audio", "train_data": {
        "path": str(train)}, "data": {"path": str(test)}, "weight_decays": [1e-4, 1e-2, 1.0]}]}, "test").tasks
    model, transforms, tokenizer = tone_model()
    result = evaluate_task(model, transforms, tokenizer, task, bootstrap=BootstrapConfig(samples=100)).result
    m = result["metrics"]
    # The probe refit here from the same embeddings and targets is the task's probe: its scores are the task's.
    train_data, test_data = (embed_source(model, open_source(p), ["audio"], transforms, tokenizer, Loading(),
                                          need_labels=True) for p in (train, test))
    probe = train_probe(train_data.features["audio"], targets(train_data, 3, train), 3, task)
    scores = probe.scores(test_data.features["audio"])
    test_targets = targets(test_data, 3, test)
    assert m["per_class_ap"] == pytest.approx(sklearn_per_class(scores, test_targets), abs=1e-12)
    assert m["mAP"] == pytest.approx(np.mean(sklearn_per_class(scores, test_targets)), abs=1e-12)
    assert (m["weight_decay"], m["num_train"], m["num_validation"], m["num_test"]) == (probe.weight_decay, 18, 3, 12)
    assert result["probe"]["validation_mAP"] == probe.validation and len(probe.validation) == 3
    assert result["probe"]["classifier"].startswith("one-vs-rest logistic regression")
    assert result["intervals"]["mAP"][0] <= m["mAP"] <= result["intervals"]["mAP"][1]
    assert headline(result).startswith("linear-probe mAP: ")
    few = evaluate_task(model, transforms, tokenizer, task.model_copy(update={"fewshot_k": 2, "weight_decays": [1e-2]}))
    m = few.result["metrics"]
    assert (m["fewshot_k"], m["fewshot_short_classes"], m["num_validation"]) == (2, 0, 0) and 2 <= m["num_train"] <= 6


def test_linear_probe_training_classes_need_a_positive_and_a_negative(tmp_path):
    train = tmp_path / "train.jsonl"
    write_tones(tmp_path, per_class=2)
    train.write_text("".join(json.dumps({"audio": f"{name}/{name}_{i}.wav", "label": [name, "high"]}) + "\n"
                             for name in CLASSES for i in range(2)))
    (task,) = validate(EvalConfig, {"tasks": [{"type": "linear_probe", "modality": "audio", "train_data": {
        "path": str(train)}, "data": {"path": str(train)}, "weight_decays": [1e-2]}]}, "test").tasks
    with pytest.raises(UserError, match=r"train.jsonl: class\(es\) \[0\] have no positive or no negative"):
        evaluate_task(*tone_model(), task)
