"""A data stream resumed from its saved position continues with exactly the batches of an uninterrupted one, without
decoding anything it had already consumed, in exact and resampled epochs, across epoch ends."""

from __future__ import annotations

import json
import pytest
import torch

from mmcl.data import DataConfig, build_loader
from mmcl.data.decode import SampleDecoder
from mmcl.training.data_stream import DataStream
from tests.shard_factory import image_text_samples, image_transforms, tokenizer, write_shards

TRANSFORMS = image_transforms(16)["train"]
TOKENIZER = tokenizer()


def make_stream(cfg: DataConfig, rank: int = 0, world_size: int = 1) -> DataStream:
    return DataStream(lambda epoch: build_loader(cfg, TRANSFORMS, TOKENIZER, train=True, epoch=epoch, seed=5,
                                                 rank=rank, world_size=world_size), seed=5, rank=rank)


def same_batch(a: dict, b: dict) -> bool:
    return (a["__key__"] == b["__key__"] and torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"])
            and a["__failures__"] == b["__failures__"])


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory):
    """Shards of 9, 4, 13, 2 and 7 samples, some corrupt, so positions fall mid-shard, mid-block and past failures,
    and the slot holding the first shard runs short of batches (its worker ends before the other)."""
    folder = tmp_path_factory.mktemp("uneven")
    samples = image_text_samples(35, noisy=True)
    for i in (0, 2, 4, 6, 8, 17, 30):
        samples[i] = {"__key__": f"broken{i}", "jpg": b"not a jpeg", "txt": "x"}
    start = 0
    for n, size in enumerate((9, 4, 13, 2, 7)):
        (written,) = write_shards(folder / "tmp", samples[start:start + size], per_shard=size)
        written.rename(folder / f"shard-{n:06d}.tar")
        start += size
    return folder


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_at_every_position_continues_exactly(uneven_shards, workers):
    cfg = DataConfig(train_shards=str(uneven_shards), batch_size=3, num_workers=workers, shuffle_buffer=5)
    reference = make_stream(cfg)
    expected, epochs = [], []
    while not epochs or epochs[-1] < 2 or epochs.count(2) < 2:  # into the third epoch
        expected.append(next(reference))
        epochs.append(reference.epoch)
    per_epoch = epochs.count(0)
    assert [b["__key__"] for b in expected[:per_epoch]] != [b["__key__"] for b in expected[per_epoch:2 * per_epoch]]
    states = []
    replay = make_stream(cfg)
    for _ in range(len(expected)):
        states.append(json.loads(json.dumps(replay.state_dict())))  # as the checkpoint stores it
        next(replay)
    for k in range(len(expected)):
        resumed = make_stream(cfg)
        resumed.load_state_dict(states[k])
        got = [next(resumed) for _ in range(len(expected) - k)]
        assert all(same_batch(a, b) for a, b in zip(got, expected[k:])), f"resumed after {k} batches"
        assert resumed.state_dict() == replay.state_dict()
    # same_batch compares the failure counts too: each is reported once, by the batch after it, resumed or not.
    assert sum(b["__failures__"].get("undecodable image", 0) for b in expected[:per_epoch]) == 7


def test_resuming_decodes_only_what_the_next_batch_needs(uneven_shards, monkeypatch):
    cfg = DataConfig(train_shards=str(uneven_shards), batch_size=2, num_workers=0, shuffle_buffer=8)
    decoded = []
    original = SampleDecoder.__call__
    monkeypatch.setattr(SampleDecoder, "__call__", lambda self, raw, rng: decoded.append(raw["__key__"]) or
                        original(self, raw, rng))
    stream = make_stream(cfg)
    states = []
    for _ in range(16):
        states.append(stream.state_dict())
        next(stream)
    for k in (1, 8, 15):
        decoded.clear()
        resumed = make_stream(cfg)
        resumed.load_state_dict(states[k])
        assert decoded == []
        batch = next(resumed)
        # The batch's samples, plus any broken one met on the way: never the samples consumed before the position.
        assert set(batch["__key__"]) <= set(decoded) and len(decoded) <= 2 + 3, (k, decoded)


@pytest.mark.parametrize("workers", [0, 2])
def test_resampled_stream_resumes_exactly_without_replay(tmp_path, workers, monkeypatch):
    write_shards(tmp_path, image_text_samples(20, noisy=True), per_shard=4)
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=3, num_workers=workers, shuffle_buffer=4, resampled=True,
                     samples_per_epoch=24)  # 8 batches per epoch
    reference = make_stream(cfg)
    expected = [next(reference) for _ in range(12)]
    stream = make_stream(cfg)
    for _ in range(5):
        next(stream)
    decoded = []
    original = SampleDecoder.__call__
    monkeypatch.setattr(SampleDecoder, "__call__", lambda self, raw, rng: decoded.append(1) or original(self, raw, rng))
    resumed = make_stream(cfg)
    resumed.load_state_dict(json.loads(json.dumps(stream.state_dict())))
    assert decoded == []
    assert all(same_batch(next(resumed), b) for b in expected[5:])


def test_a_position_from_another_plan_is_refused(uneven_shards):
    cfg = DataConfig(train_shards=str(uneven_shards), batch_size=3, num_workers=0, shuffle_buffer=5)
    stream = make_stream(cfg)
    next(stream)
    other = make_stream(cfg.model_copy(update={"shuffle_buffer": 6}))
    with pytest.raises(Exception, match=r"another data plan \(shuffle_buffer 5 -> 6\)"):
        other.load_state_dict(stream.state_dict())


def test_one_process_without_agree_and_plain_iterables_still_work():
    stream = DataStream(lambda epoch: [{"__key__": [f"{epoch}-{i}"], "__failures__": {}} for i in range(3)], 0, 0)
    assert [next(stream)["__key__"][0] for _ in range(4)] == ["0-0", "0-1", "0-2", "1-0"]
    state = stream.state_dict()
    resumed = DataStream(lambda epoch: [{"__key__": [f"{epoch}-{i}"], "__failures__": {}} for i in range(3)], 0, 0)
    resumed.load_state_dict(state)  # replayed: such a loader has no position
    assert next(resumed)["__key__"] == ["1-1"]
