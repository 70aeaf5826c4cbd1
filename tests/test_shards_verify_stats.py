"""verify finds what is wrong with a shard set; stats reports the right numbers."""

import json

from webdataset import TarWriter

from data_tools.prepare import prepare_shards
from data_tools.stats import collect_stats
from data_tools.verify import verify
from tests.shards_fixtures import flac_bytes, image_bytes, make_pairs, run_cli


def _prepared(tmp_path, n=6, shard_size=3):
    out = tmp_path / "out"
    prepare_shards(make_pairs(tmp_path / "src", n), out, shard_size=shard_size, progress=False)
    return out


def test_verify_accepts_a_good_set(tmp_path, capsys):
    out = _prepared(tmp_path)
    assert run_cli("shards", "verify", out, "--workers", "2") == 0
    assert "6 samples in 2 shard(s)" in capsys.readouterr().out


def test_verify_reports_a_truncated_shard(tmp_path, capsys):
    out = _prepared(tmp_path)
    tar = out / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:1500])

    assert run_cli("shards", "verify", out) == 1
    text = capsys.readouterr().out
    assert "shard-000001.tar: size 1500 is not a whole number of tar blocks" in text
    assert "shard-000001.tar: corrupt or truncated tar" in text
    assert "sizes.json says 3" in text


def test_verify_reports_an_undecodable_sample_and_missing_shards(tmp_path):
    out = _prepared(tmp_path)
    with TarWriter(str(out / "shard-000001.tar"), encoder=False) as tar:
        tar.write({"__key__": "fine", "jpg": image_bytes(), "txt": b"ok"})
        tar.write({"__key__": "broken", "jpg": image_bytes()[:100], "txt": b"ok", "flac": flac_bytes()[:60]})
        tar.write({"__key__": "label", "cls": b"seven"})
    sizes = json.loads((out / "sizes.json").read_text())
    (out / "sizes.json").write_text(json.dumps({**sizes, "shard-000009.tar": 1}))

    report = verify(out)

    assert not report["ok"]
    problems = "\n".join(report["problems"])
    assert "shard-000001.tar: broken.jpg does not decode (bad_image" in problems
    assert "shard-000001.tar: broken.flac does not decode (bad_audio" in problems
    assert "shard-000001.tar: label.cls does not decode (bad_cls" in problems
    assert "shard-000009.tar: listed in sizes.json but missing" in problems
    assert len(report["problems"]) == 4


def test_verify_reports_a_broken_sizes_json_and_leftover_temporaries(tmp_path):
    out = _prepared(tmp_path)
    (out / "sizes.json").write_text("{oops")
    (out / "shard-000002.tar.123.tmp").write_bytes(b"half a shard")
    problems = verify(out)["problems"]
    assert problems[0].startswith("sizes.json: not valid JSON")
    assert problems[1] == "shard-000002.tar.123.tmp: leftover temporary file from an interrupted run"
    assert len(problems) == 2


def test_stats_summarises_modalities_and_sizes(tmp_path, capsys):
    src = make_pairs(tmp_path / "src", 4, size=(40, 30))
    (src / "img003.flac").write_bytes(flac_bytes(seconds=0.5))
    (src / "bad.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    prepare_shards(src, out, progress=False)

    summary, values = collect_stats(out)

    assert summary["samples"] == 4
    assert summary["samples_with"] == {"audio": 1, "image": 4, "text": 4}
    assert summary["image_width"] == {"min": 40, "mean": 40, "median": 40, "max": 40}
    assert summary["caption_chars"]["max"] == len("caption number 3")
    assert summary["audio_seconds"]["max"] == 0.5
    assert summary["skipped_when_prepared"] == {"bad_image": 1}
    assert run_cli("shards", "stats", out, "--plot", tmp_path / "stats.png") == 0
    assert "skipped when prepared: 1 bad_image" in capsys.readouterr().out
    assert (tmp_path / "stats.png").stat().st_size > 1000


def test_shards_close_at_the_byte_limit(tmp_path):
    src = make_pairs(tmp_path / "src", 6)
    per_sample = (src / "img000.jpg").stat().st_size + (src / "img000.txt").stat().st_size
    out = tmp_path / "out"
    prepare_shards(src, out, shard_size=100, shard_bytes=2 * per_sample, progress=False)
    assert json.loads((out / "sizes.json").read_text()) == {f"shard-{i:06d}.tar": 2 for i in range(3)}
