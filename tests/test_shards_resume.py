"""Resume after SIGKILL, disjoint --part jobs plus merge, and worker count not changing a byte."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from data_tools.prepare import prepare_shards
from data_tools.verify import verify
from tests.shards_fixtures import UserError, make_pairs, run_cli

# Run prepare in a child whose 10th sample announces itself and then hangs until the test kills it.
_CHILD = """
import sys, time
from pathlib import Path
from data_tools import writer
from data_tools.prepare import prepare_shards

src, out, marker = map(Path, sys.argv[1:])
real, seen = writer.build_sample, []
def build_sample(spec, opts):
    seen.append(spec.key)
    if len(seen) == 10:
        marker.write_text(spec.key)
        time.sleep(60)
    return real(spec, opts)
writer.build_sample = build_sample
prepare_shards(src, out, shard_size=4, progress=False)
"""


def _files(out):
    """Every shard-level file's bytes, except stats (they hold timings)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.endswith("stats.json") and p.name != "prepare.json"}


@pytest.fixture
def reference(tmp_path):
    src = make_pairs(tmp_path / "src", 14)
    out = tmp_path / "reference"
    prepare_shards(src, out, shard_size=4, progress=False)
    return src, _files(out)


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, reference):
    src, expected = reference
    out, marker = tmp_path / "out", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(out), str(marker)])
    deadline = time.monotonic() + 60
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL and marker.read_text() == "img009"

    # Two whole shards survive; the third is only a temporary file that no *.tar glob sees.
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    assert len(list(out.glob("shard-000002.tar.*.tmp"))) == 1 and not (out / "sizes.json").exists()
    assert not verify(out)["ok"]

    summary = prepare_shards(src, out, shard_size=4, progress=False)

    assert (summary["shards_resumed"], summary["shards_written"]) == (2, 2)
    assert _files(out) == expected  # the leftover temporary file is gone too
    assert verify(out)["ok"]


def test_parts_write_disjoint_shards_and_the_last_one_merges(tmp_path, reference):
    src, expected = reference
    out = tmp_path / "out"
    argv = ["shards", "prepare", src, "-o", out, "--shard-size", "4", "--num-parts", "3", "--quiet"]

    assert run_cli(*argv, "--part", "2") == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000002.tar", "shard-000003.tar"]
    assert run_cli(*argv, "--part", "0") == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000002.tar", "shard-000003.tar"]
    with pytest.raises(UserError, match="1 shard.* not written yet .shard-000001.tar"):
        run_cli("shards", "merge", out)
    assert not (out / "sizes.json").exists()

    assert run_cli(*argv, "--part", "1") == 0  # the last part to finish writes the set-level files

    assert _files(out) == expected
    assert json.loads((out / "sizes.json").read_text()) == {f"shard-{i:06d}.tar": n for i, n in enumerate([4, 4, 4, 2])}
    assert run_cli("shards", "merge", out) == 0


def test_an_output_inside_the_input_is_not_read_as_input(tmp_path, reference):
    src, expected = reference
    out = src / "shards"
    prepare_shards(src, out, shard_size=4, progress=False)
    summary = prepare_shards(src, out, shard_size=4, progress=False)  # its json files would change the listing
    assert summary["shards_resumed"] == 4
    assert _files(out) == expected


def test_resuming_with_other_options_is_refused_naming_each_difference(tmp_path, reference):
    src, _ = reference
    out = tmp_path / "out"
    prepare_shards(src, out, shard_size=4, progress=False)
    with pytest.raises(UserError) as refused:
        run_cli("shards", "prepare", src, "-o", out, "--shard-size", "5", "--resize-mode", "border", "--dedup", "--quiet")
    message = str(refused.value)
    assert message.startswith(f"{out / 'prepare.json'}: this output was prepared from other inputs or options")
    assert "--shard-size 4 -> 5" in message and "--resize-mode none -> border" in message and "--dedup off -> on" in message
    assert "another --output" in message and f"remove {out}" in message
    assert "--image-size" not in message  # unchanged options are not named


def test_resuming_from_another_input_is_refused_naming_it(tmp_path, reference):
    src, _ = reference
    out = tmp_path / "out"
    prepare_shards(src, out, shard_size=4, progress=False)
    (src / "img000.txt").unlink()  # same samples, one file fewer
    with pytest.raises(UserError, match="the input's files, captions or labels changed .same number of samples"):
        prepare_shards(src, out, shard_size=4, progress=False)
    other = make_pairs(tmp_path / "other", 3)
    with pytest.raises(UserError, match=f"SOURCE {src} -> {other}; samples listed 14 -> 3"):
        prepare_shards(other, out, shard_size=4, progress=False)


def test_two_workers_write_the_same_bytes_as_one(tmp_path, reference):
    src, expected = reference
    out = tmp_path / "out"
    summary = prepare_shards(src, out, shard_size=4, workers=2, progress=False)
    assert summary["shards_written"] == 4
    assert _files(out) == expected
