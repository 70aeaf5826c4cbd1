"""The hostile corpus through every stage that reads shards: each keeps every good sample and counts every bad one.

The stages: `mmcl shards prepare` (from files and from a manifest), `mmcl shards verify`, the training loader (two
workers), a training run, and every evaluation task.
A stage sees only the modalities it uses, so a sample whose only fault is in its audio is good for an image-text
task; each test states which bad samples its stage must meet.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tarfile
import textwrap
from collections import Counter

import pytest

from mmcl.data import DataConfig, build_loader
from mmcl.eval import EvalConfig, run_tasks
from mmcl.models import create_model
from data_tools.prepare import prepare_shards
from tests.hostile_corpus import hostile_samples, write_corpus, write_files
from tests.shards_fixtures import run_cli

AUDIO_FAULTS = {"bad009", "bad010", "bad011", "bad012", "bad013"}  # good image and caption, bad audio
LABEL_FAULTS = {"bad006", "bad007", "bad008"}
BROKEN_SHARD_FAILURES = 3  # webdataset reports the cut tar twice (member, then stream) and the non-tar once


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def tiny_audio():
    return create_model("tiny-audio")


def _train_epoch(corpus, tiny_audio, num_workers: int) -> tuple[list[str], Counter]:
    _, transforms, tokenizer = tiny_audio
    cfg = DataConfig(train_shards=str(corpus.shards[0].parent), batch_size=1, num_workers=num_workers,
                     modalities=["image", "text", "audio"], shuffle_buffer=4)
    keys, failures = [], Counter()
    for batch in build_loader(cfg, transforms.train, tokenizer, train=True):
        keys += batch["__key__"]
        failures.update(batch["__failures__"])
    return keys, failures


def test_training_loader_keeps_every_good_sample_and_counts_every_bad_one(corpus, tiny_audio):
    keys, failures = _train_epoch(corpus, tiny_audio, num_workers=2)
    assert sorted(keys) == sorted(corpus.good)  # each good sample once, none lost
    assert failures == {"bad text": 7, "undecodable image": 5, "undecodable audio": 5, "bad label": 3,
                        "duplicate key": 1, "unreadable: ReadError": BROKEN_SHARD_FAILURES}


def test_each_skipped_sample_is_named_with_its_problem(corpus, tiny_audio, caplog):
    with caplog.at_level(logging.WARNING, logger="mmcl.data"):
        keys, _ = _train_epoch(corpus, tiny_audio, num_workers=0)
    assert sorted(keys) == sorted(corpus.good)
    for key, words in corpus.bad.items():
        assert any(f"'{key}'" in m and words in m for m in caplog.messages), (key, words)


def test_training_runs_through_the_hostile_corpus(corpus, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pipelines.cli", "train", "configs/demo.yaml", "model=tiny-audio",
               f"data.train_shards={corpus.shards[0].parent}", "data.modalities=[image, text, audio]",
               "loss=[{name: pairwise}]",
               "data.batch_size=4", "data.num_workers=2", "data.shuffle_buffer=4", "train.steps=8",
               "train.log_every=8", "train.trackers=[]", f"train.output_dir={out}", "optim.warmup_steps=1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    skipped = {k.removeprefix("decode_failures/"): v for k, v in record.items()
               if k.startswith("decode_failures/")}
    # 8 steps of 4 take more than one epoch of 25 good samples: every bad sample was met at least once.
    assert skipped and all(v >= 1 for v in skipped.values()), record
    assert {"bad text", "undecodable image", "undecodable audio", "bad label"} <= set(skipped)


def _eval(corpus, tiny_audio, task: dict) -> dict:
    model, transforms, tokenizer = tiny_audio
    (task,) = EvalConfig(tasks=[{"data": {"path": str(corpus.shards[0].parent)}, **task}]).tasks
    (result,) = run_tasks(model, transforms.eval, tokenizer, [task], num_workers=2).values()
    return result


def test_every_eval_task_keeps_every_usable_item_and_counts_the_rest(corpus, tiny_audio):
    # The cut shard's second sample never comes out of the tar; the repeated key does, and is counted.
    readable = len(corpus.good) + len(corpus.bad) + 1
    image_faults = {k for k, w in corpus.bad.items() if "image" in w or w in ("max_aspect_ratio", "max_pixels")}
    expected = {  # kept items; the undecodable image/audio counts where the task decodes them
        # zero-shot needs a label, which only good samples carry: the rest are skipped before decoding
        ("zeroshot_classification", ("image",)): (len(corpus.good), 0, 0),
        ("zeroshot_classification", ("audio",)): (len(corpus.with_audio), 0, 0),
        ("retrieval", ("image", "text")): (len(corpus.good) + len(AUDIO_FAULTS), len(image_faults), 0),
        ("geometry", ("image", "text")): (len(corpus.good) + len(AUDIO_FAULTS), len(image_faults), 0),
        ("multimodal_retrieval", ("image", "text", "audio")): (len(corpus.with_audio), 0, len(AUDIO_FAULTS)),
    }
    for (kind, modalities), (kept, bad_images, bad_audio) in expected.items():
        task = {"type": kind, "modality": modalities[0]} if kind == "zeroshot_classification" else \
            {"type": kind, "modalities": list(modalities)}
        dataset = _eval(corpus, tiny_audio, task)["dataset"]
        skipped = dataset["skipped"]
        assert dataset["num_items"] == kept, (kind, dataset)
        assert sum(v for r, v in skipped.items() if not r.startswith("unreadable")) == readable - kept, (kind, skipped)
        # Captions and labels are read for every item, whatever the task: their faults count everywhere.
        assert skipped["bad text or label"] == 10 and skipped["duplicate key"] == 1, (kind, skipped)
        assert skipped.get("undecodable image", 0) == bad_images, (kind, skipped)
        assert skipped.get("undecodable audio", 0) == bad_audio, (kind, skipped)
        assert sum(v for r, v in skipped.items() if r.startswith("unreadable")) >= 2, (kind, skipped)


def _prepared(source, output, layout: str) -> tuple[set[str], dict]:
    summary = prepare_shards(source, output, layout=layout, shard_size=16, progress=False)
    kept = {name.split(".", 1)[0] for tar in output.glob("*.tar") for name in tarfile.open(tar).getnames()}
    return kept, summary["merged"]["failures_by_reason"]


def test_prepare_from_files_and_from_a_manifest_keeps_every_good_sample(tmp_path):
    samples, _ = hostile_samples(long_audio_seconds=60)
    files = write_files(tmp_path / "files", samples)
    good = {s["__key__"] for s in samples if s["__key__"].startswith("good")}

    kept, failed = _prepared(files, tmp_path / "from_files", "folder")
    # Labels are not files in this layout, so the label faults are whole samples here; the 1x100000 strip is
    # stored as it is (verify and the loaders refuse it).
    assert kept == good | LABEL_FAULTS | {"bad017"}
    assert failed == {"bad_audio": 5, "bad_image": 3, "bad_json": 5, "bad_text": 1, "empty_caption": 1,
                      "too_many_pixels": 1}

    kept, failed = _prepared(files / "manifest.jsonl", tmp_path / "from_manifest", "manifest")
    # The manifest carries the bad json's text as caption cells: [1, 2], 5 and {"x": "y"} are not captions; an
    # empty list or unparsable json leaves a row with no caption, which is allowed.
    assert good <= kept
    assert failed == {"bad_audio": 5, "bad_caption": 3, "bad_image": 3, "bad_label": 3, "empty_caption": 1,
                      "too_many_pixels": 1}


def test_verify_names_every_bad_key_and_fails(corpus, capsys):
    assert run_cli("shards", "verify", corpus.shards[0].parent) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    for key in corpus.bad:
        assert key in text, key
    for name in corpus.broken_shards:
        assert name in text, name


_BOUNDED = textwrap.dedent("""
    import resource, sys
    from collections import Counter
    from mmcl.data import DataConfig, build_loader
    from mmcl.models import create_model
    model, transforms, tokenizer = create_model("tiny-audio")
    cfg = DataConfig(train_shards=sys.argv[1], batch_size=1, num_workers=2, shuffle_buffer=4,
                     modalities=["image", "text", "audio"])
    # Address space now, plus room for decoding small samples: a full decode of the long audio (2 h of float32)
    # or of the 96 MP image would need more than this.
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + 300 * 2**20, resource.RLIM_INFINITY))
    keys = [k for batch in build_loader(cfg, transforms.train, tokenizer, train=True) for k in batch["__key__"]]
    print(len(keys))
""")


def test_loaders_stay_within_an_address_space_limit(tmp_path):
    corpus = write_corpus(tmp_path / "long", long_audio_seconds=2 * 3600)
    result = subprocess.run([sys.executable, "-c", _BOUNDED, str(tmp_path / "long")], capture_output=True,
                            text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) == len(corpus.good)
