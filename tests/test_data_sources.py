"""Shard URL specs, resampled epochs with a sample budget, weighted mixtures, config checks, text augmentation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mmcl.config import ConfigError, validate
from mmcl.data import DataConfig, ShardSource, build_loader, expand_urls
from mmcl.data.text import TextAugmentConfig, augment
from mmcl.errors import UserError
from tests.shard_factory import image_text_samples, image_transforms, tokenizer, write_shards

TRANSFORMS = image_transforms(32)["train"]
TOKENIZER = tokenizer()


def batches(cfg: DataConfig, **kw) -> list[dict]:
    return list(build_loader(cfg, TRANSFORMS, TOKENIZER, train=True, **kw))


def test_url_specs_directory_braces_lists_and_pipes(tmp_path):
    names = [f"{i}.tar" for i in (0, 1, 2, 10)]  # CLIP_benchmark-style names: natural order, not 0, 1, 10, 2
    for name, start in zip(names, range(0, 8, 2)):
        write_shards(tmp_path / "tmp", image_text_samples(2, prefix=f"k{start}_"), per_shard=2)[0].rename(tmp_path / name)
    assert expand_urls(str(tmp_path)) == [str(tmp_path / n) for n in names]
    assert expand_urls([str(tmp_path / "{0..2}.tar"), str(tmp_path / "10.tar")]) == expand_urls(str(tmp_path))
    piped = f"pipe:cat {tmp_path}/{{0..2}}.tar"
    assert expand_urls(piped) == [f"pipe:cat {tmp_path}/{i}.tar" for i in range(3)]
    cfg = DataConfig(train_shards=piped, batch_size=2, num_workers=0)
    keys = [k for b in build_loader(cfg, TRANSFORMS, TOKENIZER, train=False) for k in b["__key__"]]
    assert keys == ["k0_00000", "k0_00001", "k2_00000", "k2_00001", "k4_00000", "k4_00001"]
    with pytest.raises(UserError, match="holds no .tar shards"):
        expand_urls(str(tmp_path / "tmp"))


def test_missing_shards_are_named(tmp_path):
    with pytest.raises(UserError, match=r"shard not found: .*shard-000000\.tar \(and 3 more\)"):
        expand_urls(str(tmp_path / "shard-{000000..000003}.tar"))


def test_resampled_budget_is_honoured_on_every_rank(tmp_path):
    write_shards(tmp_path, image_text_samples(9), per_shard=3)  # fewer shards than ranks x workers is fine here
    cfg = DataConfig(train_shards=str(tmp_path), batch_size=4, num_workers=2, shuffle_buffer=8, resampled=True,
                     samples_per_epoch=50)
    for rank in range(2):
        sizes = [len(b["__key__"]) for b in batches(cfg, rank=rank, world_size=2, seed=3)]
        assert sizes == [4] * 7  # ceil(50 / (4 x 2)) full batches on each rank
    first = [b["__key__"] for b in batches(cfg, seed=3, epoch=0)]
    assert first == [b["__key__"] for b in batches(cfg, seed=3, epoch=0)]
    assert first != [b["__key__"] for b in batches(cfg, seed=3, epoch=1)]


def test_sources_mix_by_weight(tmp_path):
    write_shards(tmp_path / "a", image_text_samples(12, prefix="a"), per_shard=3)
    write_shards(tmp_path / "b", image_text_samples(12, prefix="b"), per_shard=3)
    cfg = DataConfig(sources=[ShardSource(shards=str(tmp_path / "a"), weight=3),
                              ShardSource(shards=str(tmp_path / "b"), weight=1)],
                     batch_size=10, num_workers=1, shuffle_buffer=20, resampled=True, samples_per_epoch=400)
    counts = Counter(k[0] for b in batches(cfg) for k in b["__key__"])
    assert sum(counts.values()) == 400
    assert 0.68 < counts["a"] / 400 < 0.82  # expected 0.75; a binomial sd is 0.022
    exact = cfg.model_copy(update={"resampled": False, "samples_per_epoch": None,
                                   "sources": [ShardSource(shards=str(tmp_path / s)) for s in "ab"]})
    keys = [k for b in build_loader(exact, TRANSFORMS, TOKENIZER, train=False) for k in b["__key__"]]
    assert sorted(keys) == sorted([f"a{i:05d}" for i in range(12)] + [f"b{i:05d}" for i in range(12)])


def test_unreadable_resampled_source_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"not a tar file" * 100)
    cfg = DataConfig(train_shards=str(tmp_path / "bad.tar"), batch_size=2, num_workers=0, resampled=True,
                     samples_per_epoch=10)
    with pytest.raises(UserError, match="100 shards drawn in a row .* gave no readable sample"):
        batches(cfg)


@pytest.mark.parametrize("data, message", [
    ({"batch_size": 2}, "exactly one of data.train_shards and data.sources"),
    ({"train_shards": "x", "sources": [{"shards": "y"}]}, "exactly one of"),
    ({"train_shards": "x", "resampled": True}, "needs data.samples_per_epoch"),
    ({"train_shards": "x", "samples_per_epoch": 10}, "needs data.samples_per_epoch"),
    ({"sources": [{"shards": "x", "weight": 2}]}, "weights need data.resampled: true"),
    ({"train_shards": "x", "text_augment": {"word_dropp": 0.1}}, "text_augment.word_dropp: unknown key"),
])
def test_config_mistakes_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        validate(DataConfig, data, "test")


def test_text_augmentation_drops_and_swaps_words():
    rng = random.Random(0)
    words = "a small red square on a grey field".split()
    swapped = augment(" ".join(words), TextAugmentConfig(word_swap=0.5), rng).split()
    assert sorted(swapped) == sorted(words) and swapped != words
    dropped = [augment(" ".join(words), TextAugmentConfig(word_drop=0.5), rng).split() for _ in range(200)]
    assert all(1 <= len(d) <= len(words) and all(w in words for w in d) for d in dropped)
    assert 0.4 < sum(len(d) for d in dropped) / (200 * len(words)) < 0.6
    assert augment("one", TextAugmentConfig(word_drop=0.99), rng) == "one"
