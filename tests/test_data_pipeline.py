"""The streaming loader: rank/worker splitting, determinism, masks for missing modalities, skipped samples."""

from __future__ import annotations

import pytest
import torch

from mmcl.data import DataConfig, build_loader
from mmcl.errors import UserError
from mmcl.models import create_model
from tests.shard_factory import image_text_samples, jpeg_bytes, write_shards


@pytest.fixture(scope="module")
def tiny():
    _, transforms, tokenizer = create_model("tiny")
    return transforms, tokenizer


def keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["__key__"]]


def test_two_ranks_two_workers_see_every_sample_once(tmp_path, tiny):
    transforms, tokenizer = tiny
    write_shards(tmp_path, image_text_samples(40), per_shard=5)  # 8 shards for 2 ranks x 2 workers
    # 10 samples per worker: batches of 5 drop nothing (training drops a last partial batch).
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=5, num_workers=2, shuffle_buffer=8)
    seen = []
    for rank in range(2):
        seen += keys(build_loader(cfg, transforms.train, tokenizer, train=True, epoch=3, seed=1, rank=rank,
                                  world_size=2))
    assert sorted(seen) == [f"s{i:05d}" for i in range(40)]


def test_same_seed_same_batches_other_epoch_other_order(tmp_path, tiny):
    transforms, tokenizer = tiny
    write_shards(tmp_path, image_text_samples(32), per_shard=4)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2, shuffle_buffer=16)

    def run(epoch):
        loader = build_loader(cfg, transforms.train, tokenizer, train=True, epoch=epoch, seed=7)
        return [(b["__key__"], b["image"]) for b in loader]

    first, again, other = run(0), run(0), run(1)
    assert [k for k, _ in first] == [k for k, _ in again]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, again))  # augmentation is seeded too
    assert [k for k, _ in first] != [k for k, _ in other]
    assert sorted(k for ks, _ in first for k in ks) == sorted(k for ks, _ in other for k in ks)


def test_missing_modalities_get_masks_and_placeholders(tmp_path, tiny):
    transforms, tokenizer = tiny
    samples = [
        {"__key__": "both", "jpg": jpeg_bytes(), "txt": "red"},
        {"__key__": "image_only", "jpg": jpeg_bytes()},
        {"__key__": "text_only", "txt": "lonely words"},
        {"__key__": "captions", "json": b'{"text": ["one", "two"]}', "jpg": jpeg_bytes(), "cls": b"3"},
    ]
    write_shards(tmp_path, samples, per_shard=4)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=0)
    (batch,) = list(build_loader(cfg, transforms.eval, tokenizer, train=False))
    assert batch["__key__"] == ["both", "image_only", "text_only", "captions"]
    assert batch["image_mask"].tolist() == [True, True, False, True]
    assert batch["text_mask"].tolist() == [True, False, True, True]
    assert batch["image"].shape == (4, 3, 64, 64)
    assert torch.count_nonzero(batch["image"][2]) == 0
    assert torch.equal(batch["text"][2], tokenizer(["lonely words"])[0])
    assert torch.equal(batch["text"][3], tokenizer(["one"])[0])  # evaluation takes the first caption
    assert batch["label"].tolist() == [-1, -1, -1, 3]


def test_corrupt_samples_are_skipped_and_counted(tmp_path, tiny):
    transforms, tokenizer = tiny
    good = image_text_samples(6)
    bad = [
        {"__key__": "broken_jpeg", "jpg": b"\xff\xd8 not really a jpeg", "txt": "x"},
        {"__key__": "bad_utf8", "jpg": jpeg_bytes(), "txt": b"\xff\xfe\xfa"},
        {"__key__": "empty_caption", "jpg": jpeg_bytes(), "txt": "   "},
        {"__key__": "nothing_usable", "flac": b"abc"},
    ]
    write_shards(tmp_path, good[:3] + bad + good[3:], per_shard=20)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=2, num_workers=0)
    batches = list(build_loader(cfg, transforms.eval, tokenizer, train=False))
    assert [k for b in batches for k in b["__key__"]] == [s["__key__"] for s in good]
    failures: dict[str, int] = {}
    for b in batches:
        for reason, count in b["__failures__"].items():
            failures[reason] = failures.get(reason, 0) + count
    assert failures == {"undecodable image": 1, "bad text": 2, "no usable modality": 1}


def test_too_few_shards_fails_before_reading(tmp_path, tiny):
    transforms, tokenizer = tiny
    write_shards(tmp_path, image_text_samples(6), per_shard=3)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=2, num_workers=2)
    with pytest.raises(UserError, match=r"2 shard\(s\) cannot feed 2 process\(es\) x 2 loader worker\(s\): need at least 4"):
        build_loader(cfg, transforms.train, tokenizer, train=True, rank=0, world_size=2)


def test_missing_shards_are_named(tmp_path, tiny):
    transforms, tokenizer = tiny
    cfg = DataConfig(train_shards=str(tmp_path / "shard-{000000..000003}.tar"), batch_size=2)
    with pytest.raises(UserError, match=r"shard not found: .*shard-000000\.tar \(and 3 more\)"):
        build_loader(cfg, transforms.train, tokenizer, train=True)
