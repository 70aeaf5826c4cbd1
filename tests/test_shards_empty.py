"""A run that writes no sample fails saying why; verify fails on a set without samples."""

import json

import pytest
from webdataset import TarWriter

from tests.shards_fixtures import UserError, image_bytes, run_cli


def _all_bad(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    manifest = tmp_path / "m.csv"
    rows = [f"gone{i}.jpg,a caption" for i in range(5)] + ["ok.jpg,", "ok.jpg, "]
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n")
    return manifest


def test_prepare_that_writes_nothing_fails_with_the_commonest_reasons(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError) as failed:
        run_cli("shards", "prepare", _all_bad(tmp_path), "-o", out, "--quiet")
    message = str(failed.value)
    assert message.startswith(f"{out}: none of the 7 samples was written: skipped as 5 missing_file, 2 empty_caption")
    assert "gone0.jpg" in message and str(out / "stats.json") in message
    assert json.loads((out / "stats.json").read_text())["failed"] == 7  # still written, for the details


def test_a_part_that_writes_nothing_fails_before_the_set_is_complete(tmp_path):
    manifest = tmp_path / "m.csv"
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    manifest.write_text("image,caption\n" + "ok.jpg,good\n" * 2 + "gone.jpg,bad\n" * 2)
    argv = ["shards", "prepare", manifest, "-o", tmp_path / "out", "--shard-size", "2", "--num-parts", "2", "--quiet"]
    with pytest.raises(UserError, match="none of the 2 samples of --part 1 was written: skipped as 2 missing_file"):
        run_cli(*argv, "--part", "1")
    assert run_cli(*argv, "--part", "0") == 0  # the set as a whole has samples


def test_verify_fails_on_shards_without_samples(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    TarWriter(str(out / "shard-000000.tar")).close()
    (out / "sizes.json").write_text(json.dumps({"shard-000000.tar": 0}))

    assert run_cli("shards", "verify", out) == 1
    assert "problem: no samples: the 1 shard(s) are empty" in capsys.readouterr().out
