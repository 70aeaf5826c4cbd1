"""Without --shard-size the shard size follows the sample count: small sets still get a shard per reader."""

import json

import pytest

from data_tools.plan import auto_shard_size
from tests.shards_fixtures import run_cli


@pytest.mark.parametrize("samples, size, shards", [
    (950, 60, 16),  # the user's 950 images: 15 shards of 60 and one of 50
    (300, 19, 16),
    (100, 16, 7),  # too few for 16 shards of at least 16 samples
    (5, 16, 1),
    (160_000, 10_000, 16),
    (1_000_000, 10_000, 100),  # large sets keep the 10,000 cap
])
def test_the_rule_aims_at_16_shards_of_16_to_10000_samples(samples, size, shards):
    chosen, note = auto_shard_size(samples)
    assert chosen == size
    assert f"shard size {size} for {samples} samples ({shards} shard(s))" in note and "--shard-size" in note


def _captions_manifest(path, n):
    # Caption-only rows: no files to decode, so hundreds of samples cost next to nothing.
    path.write_text("caption\n" + "".join(f"caption {i}\n" for i in range(n)))
    return path


def _sizes(out):
    return list(json.loads((out / "sizes.json").read_text()).values())


def test_prepare_without_shard_size_writes_16_shards_and_says_why(tmp_path, capsys):
    manifest = _captions_manifest(tmp_path / "m.csv", 300)
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet") == 0

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("shard size 19 for 300 samples (16 shard(s)):")
    assert _sizes(out) == [19] * 15 + [15]


def test_the_chosen_size_is_the_same_on_a_rerun_and_in_every_part(tmp_path, capsys):
    manifest = _captions_manifest(tmp_path / "m.csv", 300)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli("shards", "prepare", manifest, "-o", whole, "--quiet") == 0
    assert run_cli("shards", "prepare", manifest, "-o", whole, "--quiet") == 0  # resumes: same plan
    assert "(16 already complete)" in capsys.readouterr().out

    for part in ("1", "0"):
        assert run_cli("shards", "prepare", manifest, "-o", parts, "--num-parts", "2", "--part", part, "--quiet") == 0

    assert _sizes(parts) == _sizes(whole) == [19] * 15 + [15]
    assert all((parts / name).read_bytes() == (whole / name).read_bytes() for name in json.loads((whole / "sizes.json").read_text()))


def test_an_explicit_shard_size_prints_no_note(tmp_path, capsys):
    manifest = _captions_manifest(tmp_path / "m.csv", 30)
    assert run_cli("shards", "prepare", manifest, "-o", tmp_path / "out", "--shard-size", "10", "--quiet") == 0
    assert "shard size" not in capsys.readouterr().out
    assert _sizes(tmp_path / "out") == [10, 10, 10]
