"""Exact epochs over shards of unequal sizes: every rank takes the same number of batches, each sample at most once,
what cannot be balanced is dropped and counted; sizes.json is read where present; ranks change epoch together."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from mmcl.data import DataConfig, build_loader
from mmcl.data import shards as shards_module
from mmcl.training.data_stream import DataStream
from tests.shard_factory import image_text_samples, image_transforms, tokenizer, write_shards

TRANSFORMS = image_transforms(16)["train"]
TOKENIZER = tokenizer()
SIZES = (23, 4, 11, 1, 17, 6, 3)  # 65 samples, the last shard short, as real shard sets end
DROPPED = "dropped to balance ranks"


def uneven(folder, sizes=SIZES, broken=()):
    samples = image_text_samples(sum(sizes))
    for i in broken:
        samples[i] = {"__key__": f"broken{i:03d}", "jpg": b"not a jpeg", "txt": "x"}
    start = 0
    for n, size in enumerate(sizes):
        (written,) = write_shards(folder / "tmp", samples[start:start + size], per_shard=size)
        written.rename(folder / f"shard-{n:06d}.tar")
        start += size
    return folder


def epoch_per_rank(cfg, epoch=0):
    return [list(build_loader(cfg, TRANSFORMS, TOKENIZER, train=True, epoch=epoch, seed=2, rank=rank, world_size=2))
            for rank in range(2)]


@pytest.mark.parametrize("with_sizes", [False, True])
def test_unequal_shards_give_every_rank_the_same_batches(tmp_path, with_sizes, monkeypatch):
    uneven(tmp_path)
    if with_sizes:  # as `mmcl shards prepare` writes it; the shards are then not counted
        (tmp_path / "sizes.json").write_text(json.dumps({f"shard-{n:06d}.tar": s for n, s in enumerate(SIZES)}))
        monkeypatch.setattr(shards_module, "count_samples", lambda url: pytest.fail(f"counted {url}"))
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2, shuffle_buffer=5)
    for epoch in (0, 1):
        ranks = epoch_per_rank(cfg, epoch)
        # 65 samples over 2 ranks x 2 workers: 16 or 17 each, so 4 batches of 4 per worker, 8 per rank.
        assert [len(batches) for batches in ranks] == [8, 8]
        keys = [k for batches in ranks for b in batches for k in b["__key__"]]
        assert len(keys) == len(set(keys)) == 64
        dropped = sum(Counter(b["__failures__"])[DROPPED] for batches in ranks for b in batches)
        assert dropped == 65 - 64


def test_sizes_json_decides_the_plan(tmp_path):
    uneven(tmp_path)
    (tmp_path / "sizes.json").write_text(json.dumps({f"shard-{n:06d}.tar": s for n, s in enumerate(SIZES)} |
                                                    {"shard-000000.tar": 7}))  # says 7 where there are 23
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2, shuffle_buffer=5)
    ranks = epoch_per_rank(cfg)
    # 49 declared samples: 12 or 13 per worker, 3 batches each; every sample still at most once.
    assert [len(batches) for batches in ranks] == [6, 6]
    keys = [k for batches in ranks for b in batches for k in b["__key__"]]
    assert len(keys) == len(set(keys))


def test_the_plan_is_logged_with_what_it_drops(tmp_path, caplog):
    uneven(tmp_path / "logged")
    cfg = DataConfig(train_shards=str(tmp_path / "logged"), batch_size=4, num_workers=2)
    with caplog.at_level("INFO", logger="mmcl.data"):
        build_loader(cfg, TRANSFORMS, TOKENIZER, train=True, rank=0, world_size=2)
    assert any("65 samples in 7 shard(s) over 2 process(es) x 2 loader worker(s): 8 batches of 4 per process; "
               "1 sample(s) beyond equal whole batches are dropped" in r.getMessage() for r in caplog.records)


def lockstep(n: int):
    """`agree` for n ranks driven by n threads: each returns whether every rank has a batch (an all-reduce)."""
    barrier, votes = threading.Barrier(n), [None] * n

    def agree_for(rank):
        def agree(have: bool) -> bool:
            votes[rank] = have
            barrier.wait()
            result = all(votes)
            barrier.wait()
            return result
        return agree
    return agree_for


def test_ranks_start_each_epoch_together_when_failures_leave_one_short(tmp_path, caplog):
    # Whichever rank reads the half-broken shard runs out of batches before the other.
    uneven(tmp_path, sizes=(16, 16, 16, 16), broken=range(0, 16, 2))  # half of one shard
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=0, shuffle_buffer=4)
    counts = [len(b) for b in epoch_per_rank(cfg)]
    assert counts[0] != counts[1]  # without agreement the ranks would drift apart
    agree_for = lockstep(2)
    streams = [DataStream(lambda epoch, r=r: build_loader(cfg, TRANSFORMS, TOKENIZER, train=True, epoch=epoch,
                                                           seed=2, rank=r, world_size=2), seed=2, rank=r,
                          agree=agree_for(r)) for r in range(2)]
    steps = 3 * max(counts)
    trace = [[], []]
    failures = [Counter(), Counter()]

    def run(rank):
        for _ in range(steps):
            batch = next(streams[rank])
            trace[rank].append((streams[rank].epoch, streams[rank].batches_in_epoch))
            failures[rank].update(batch["__failures__"])

    with caplog.at_level("INFO", logger="mmcl.data"):
        threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert trace[0] == trace[1] and len(trace[0]) == steps  # the same epoch at every step
    assert max(e for e, _ in trace[0]) >= 2
    longer = counts.index(max(counts))
    assert failures[longer][DROPPED] > 0
    assert sum(1 for r in caplog.records if "ended on another process first" in r.getMessage()) >= 2
