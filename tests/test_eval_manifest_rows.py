"""Every manifest row is checked: a bad label is an error naming the row (it would shift the class list); a row
whose media or text has the wrong type is skipped, counted and named, and the rest evaluates."""

from __future__ import annotations

import json
import logging
import re

import pytest

from mmcl.errors import UserError
from mmcl.eval import evaluate_task
from mmcl.eval.datasets import open_source
from tests.test_eval_audio import PITCHES, audio_task, one_thread, tone_model, write_tones  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """CLASS/NAME.wav, two clips per class; returns [(relative path, class name)] in class order."""
    root = tmp_path_factory.mktemp("manifest_rows")
    write_tones(root, per_class=2)
    return root, [(f"{name}/{name}_{i}.wav", name) for name in PITCHES for i in range(2)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_empty_csv_label_names_its_row(tones):
    root, clips = tones
    lines = [f"{p},{name}" for p, name in clips]
    lines[2] = f"{clips[2][0]},"  # data row 3
    manifest = root / "empty.csv"
    manifest.write_text("audio,label\n" + "\n".join(lines) + "\n")
    with pytest.raises(UserError, match=f"{manifest} row 3: the label is empty"):
        open_source(manifest)


@pytest.mark.parametrize("label, message", [
    (None, "the label is missing or null"),
    ("  ", "the label is empty"),
    (-1, "label -1 is outside 0..2147483647"),
    ("-3", "label -3 is outside 0..2147483647"),
    (1.5, "label '1.5' is a float, expected a class index or a class name"),
    ([["low"]], re.escape("label list \"[['low']]\" holds ['low'], expected class indices or class names")),
    (True, "label 'True' is a bool, expected a class index or a class name"),
])
def test_a_bad_jsonl_label_names_its_row(tones, label, message):
    root, clips = tones
    rows = [{"audio": p, "label": name} for p, name in clips]
    rows[4]["label"] = label
    manifest = write_jsonl(root / "bad_label.jsonl", rows)
    with pytest.raises(UserError, match=f"{manifest} row 5: {message}"):
        open_source(manifest)


def test_a_row_without_a_label_in_a_labelled_jsonl_manifest_names_its_row(tones):
    root, clips = tones
    rows = [{"audio": p, "label": name} for p, name in clips]
    del rows[0]["label"]
    manifest = write_jsonl(root / "unlabelled_row.jsonl", rows)
    with pytest.raises(UserError, match=f"{manifest} row 1: the label is missing or null"):
        open_source(manifest)


def test_a_negative_csv_label_names_its_row(tones):
    root, clips = tones
    manifest = root / "negative.csv"
    manifest.write_text("audio,label\n" + "".join(f"{p},{-1 if i == 1 else i // 2}\n" for i, (p, _) in enumerate(clips)))
    with pytest.raises(UserError, match=f"{manifest} row 2: label -1 is outside 0..2147483647"):
        open_source(manifest)


@pytest.mark.parametrize("field, value, message", [
    ("audio", 5, "audio '5' is a int, expected a path string"),
    ("audio", ["high/high_0.wav"], "audio \"\\['high/high_0.wav'\\]\" is a list, expected a path string"),
    ("image", {"path": "x.jpg"}, "image \"\\{'path': 'x.jpg'\\}\" is a dict, expected a path string"),
    ("text", 7, "'text' is a int, expected a string or a list of strings"),
])
def test_a_row_with_media_or_text_of_the_wrong_type_is_skipped_and_named(tones, caplog, field, value, message):
    root, clips = tones
    rows = [{"audio": p, "label": name} for p, name in clips]
    rows.insert(3, {"audio": clips[0][0], "label": "low", field: value})  # row 4: would be misclassified if used
    manifest = write_jsonl(root / "bad_media.jsonl", rows)
    model, transforms, tokenizer = tone_model()
    with caplog.at_level(logging.WARNING, logger="mmcl.data"):
        result = evaluate_task(model, transforms, tokenizer, audio_task(manifest)).result
    assert result["dataset"]["num_items"] == len(clips) and result["dataset"]["skipped"] == {"bad manifest row": 1}
    assert result["metrics"]["num_samples"] == len(clips) and result["metrics"]["top1"] == 1.0
    assert result["classnames"] == list(PITCHES)
    logged = [r.getMessage() for r in caplog.records if "bad manifest row" in r.getMessage()]
    assert len(logged) == 1 and "'bad_media.jsonl:4'" in logged[0]
    assert f"{manifest} row 4: " in logged[0] and re.search(message, logged[0]), logged[0]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_class_name_and_index_labels_still_work(tones, suffix):
    root, clips = tones
    # Class names (classes are their sorted set), one given as its index instead: the same classes either way.
    labels = [name for _, name in clips]
    labels[0] = 0
    if suffix == ".csv":
        manifest = root / "names.csv"
        manifest.write_text("audio,label\n" + "".join(f"{p},{label}\n" for (p, _), label in zip(clips, labels)))
    else:
        manifest = write_jsonl(root / "names.jsonl", [{"audio": p, "label": label} for (p, _), label in zip(clips, labels)])
    model, transforms, tokenizer = tone_model()
    result = evaluate_task(model, transforms, tokenizer, audio_task(manifest)).result
    assert result["classnames"] == sorted(PITCHES) == ["high", "low", "middle"]
    assert result["metrics"]["num_samples"] == len(clips) and result["metrics"]["top1"] == 1.0
    assert result["dataset"]["skipped"] == {}
