"""`mmcl shards prepare` from manifests with label lists: `cls` lists read back by mmcl.data.label, the per-sample
manifest's `labels` column, bad entries counted as bad labels naming the row, `verify`/`stats` clean, evaluation
of the shards equal to evaluation of the manifest, and the training loader reading them without a failure."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet
import pytest

from data_tools.stats import collect_stats
from data_tools.verify import verify
from mmcl.data import DataConfig, build_loader
from mmcl.data.audio import AudioTransform
from mmcl.data.label import parse_labels
from mmcl.eval import evaluate_task
from tests.shards_fixtures import read_tar, run_cli
from tests.test_eval_audio import FRONT_END, PITCHES, audio_task, one_thread, tone_model, write_tones  # noqa: F401

CLASSES = sorted(PITCHES)  # ["high", "low", "middle"]
CLIPS = [f"{name}/{name}_{i}.wav" for name in CLASSES for i in range(2)]
# The same labels by name and by index; a plain label stays one (a CSV cell without `;` is a plain label).
NAMED = [["high"], ["high", "low"], ["low"], [], ["middle", "high"], "middle"]
NAMED_CLS = [(0,), (0, 1), (1,), (), (2, 0), 2]
INDEXED = ["0", "0;1", "1", ";", "2;0", "2"]
INDEXED_CLS = [0, (0, 1), 1, (), (2, 0), 2]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two tones of each class, the class names file, and manifests of the labels above by name (JSON Lines) and
    by index (CSV)."""
    root = write_tones(tmp_path_factory.mktemp("multilabel_shards"), per_class=2)
    (root / "names.txt").write_text("".join(f"{name}\n" for name in CLASSES))
    write_jsonl(root / "named.jsonl", NAMED)
    write_csv(root / "indexed.csv", INDEXED)
    return root


def write_jsonl(path, labels):
    rows = [{"audio": clip, "label": label} for clip, label in zip(CLIPS * 2, labels)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path, labels):
    path.write_text("audio,label\n" + "".join(f"{clip},{label}\n" for clip, label in zip(CLIPS * 2, labels)))
    return path


def prepare(manifest, out, *extra):
    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet", *extra) == 0
    return out


def written_labels(out) -> dict[int, int | tuple[int, ...]]:
    """Row number -> the `cls` entry read back by the shard contract's parser."""
    return {int(key): parse_labels(sample["cls"]) for tar in sorted(out.glob("*.tar"))
            for key, sample in read_tar(tar).items()}


def failed(out) -> dict[int, str]:
    stats = json.loads((out / "stats.json").read_text())
    return {int(f["key"]): f"{f['reason']}: {f['detail']}" for f in stats["failures"]}


def test_jsonl_lists_of_names_are_written_as_cls_lists_and_a_bad_entry_fails_its_row(clips, tmp_path):
    manifest = write_jsonl(clips / "bad.jsonl", NAMED + [["low", "hihg"], ["low", 2]])
    out = prepare(manifest, tmp_path / "out", "--classnames", clips / "names.txt")

    assert written_labels(out) == dict(enumerate(NAMED_CLS))
    assert read_tar(next(out.glob("*.tar")))["000000000"]["cls"] == b"[0]"  # brackets: never read as a plain label
    assert failed(out) == {
        6: f"bad_label: {manifest} row 7: in label list ['low', 'hihg']: label 'hihg' is not one of the 3 names "
           "in --classnames",
        7: f"bad_label: {manifest} row 8: in label list ['low', 2]: label 2 is a number in a column of class names "
           "such as 'high'"}
    rows = pyarrow.parquet.read_table(out / "manifest.parquet", columns=["label", "labels"]).to_pylist()
    assert rows[:6] == [{"label": None, "labels": list(e)} for e in NAMED_CLS[:5]] + [{"label": 2, "labels": None}]
    assert (out / "classnames.txt").read_text() == "high\nlow\nmiddle\n"


def test_csv_lists_of_indices_and_malformed_lists_are_counted_bad_labels(clips, tmp_path):
    manifest = write_csv(clips / "bad.csv", INDEXED + ["1;7", "0;;1"])
    out = prepare(manifest, tmp_path / "out", "--classnames", clips / "names.txt")

    assert written_labels(out) == dict(enumerate(INDEXED_CLS))
    assert failed(out) == {
        6: f"bad_label: {manifest} row 7: in label list ['1', '7']: label 7 is not a class index of --classnames "
           "(3 names: 0..2)",
        7: f"bad_label: {manifest} row 8: label list '0;;1' has an empty entry (entries are separated by a single "
           "';'; a lone ';' is the empty list)"}


def test_verify_and_stats_read_label_lists_back_clean(clips, tmp_path):
    out = prepare(clips / "named.jsonl", tmp_path / "out")

    report = verify(out)
    assert report["ok"] and report["samples"] == 6, report["problems"]
    summary, _ = collect_stats(out)
    assert summary["read_failures_by_reason"] == {} and summary["samples_with"]["label"] == 6


@pytest.mark.parametrize("manifest", ["named.jsonl", "indexed.csv"])
def test_evaluating_the_shards_equals_evaluating_the_manifest(clips, tmp_path, manifest):
    out = prepare(clips / manifest, tmp_path / "out", "--classnames", clips / "names.txt")
    names = {"classnames": str(clips / "names.txt")}

    model, transforms, tokenizer = tone_model()
    direct, shards = (evaluate_task(model, transforms, tokenizer, audio_task(path, data={"path": str(path), **names}))
                      .result["metrics"] for path in (clips / manifest, out))
    assert shards["class_positives"] == [3, 2, 2] and shards["per_class_ap"] == direct["per_class_ap"]
    assert shards["mAP"] == direct["mAP"]


def test_the_training_loader_reads_label_lists_without_a_failure(clips, tmp_path):
    out = prepare(clips / "named.jsonl", tmp_path / "out")
    cfg = DataConfig(train_shards=str(out), modalities=["audio"], batch_size=3, num_workers=0, shuffle_buffer=1)

    batches = list(build_loader(cfg, {"audio": AudioTransform(FRONT_END, train=True)}, None, train=True))
    assert sum((Counter(b["__failures__"]) for b in batches), Counter()) == Counter()
    labels = {k: v for b in batches for k, v in zip(b["__key__"], b["label"].tolist() if "label" in b else
                                                           [-1] * len(b["__key__"]))}  # no label in the batch: none
    assert labels == {f"{i:09d}": -1 for i in range(5)} | {"000000005": 2}  # a label list: no single label
