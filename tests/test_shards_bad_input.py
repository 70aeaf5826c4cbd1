"""Bad input is skipped, counted under its reason and named; every good sample still arrives."""

import json

import pyarrow.parquet
import pytest

from data_tools.manifests import ManifestColumns
from data_tools.prepare import prepare_shards
from data_tools.verify import verify
from tests.shards_fixtures import UserError, flac_bytes, image_bytes, make_pairs, read_tar, run_cli


def _stats(out):
    return json.loads((out / "stats.json").read_text())


def test_folder_bad_samples_are_skipped_by_reason(tmp_path):
    src = make_pairs(tmp_path / "src", 3)  # img000..img002 are good
    jpg = image_bytes()
    (src / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "cut.txt").write_text("truncated image")
    (src / "noisy.jpg").write_bytes(jpg)
    (src / "noisy.flac").write_bytes(flac_bytes()[:200])
    (src / "short.jpg").write_bytes(jpg)
    wav = flac_bytes(fmt="WAV")
    (src / "short.wav").write_bytes(wav[: len(wav) // 2])  # libsndfile alone would read half the audio
    (src / "latin1.jpg").write_bytes(jpg)
    (src / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (src / "blank.jpg").write_bytes(jpg)
    (src / "blank.txt").write_text("  \n\t ")
    (src / "bomb.png").write_bytes(image_bytes((100, 100), fmt="PNG"))  # 10,000 px over the 5,000 limit
    (src / "twice.jpg").write_bytes(jpg)
    (src / "twice.png").write_bytes(image_bytes(fmt="PNG"))
    (src / "a_b.jpg").write_bytes(jpg)
    (src / "a.b.jpg").write_bytes(jpg)  # its key is also a_b: webdataset keys cannot hold dots
    (src / "meta.jpg").write_bytes(jpg)
    (src / "meta.json").write_text("{not json")
    with open(bytes(src) + b"/caf\xe9.jpg", "wb") as f:  # a file name that is not UTF-8
        f.write(jpg)
    out = tmp_path / "out"

    # Two workers: failures travel back from worker processes too.
    assert run_cli("shards", "prepare", src, "-o", out, "--shard-size", "4", "--max-pixels", "5000", "--workers", "2", "--quiet") == 0

    stats = _stats(out)
    assert stats["failures_by_reason"] == {
        "bad_audio": 2, "bad_encoding": 1, "bad_image": 1, "bad_json": 1, "bad_text": 1, "duplicate_key": 2, "empty_caption": 1, "too_many_pixels": 1,
    }
    failed = {f["key"]: f["reason"] for f in stats["failures"]}
    assert failed == {"cut": "bad_image", "noisy": "bad_audio", "short": "bad_audio", "latin1": "bad_text", "blank": "empty_caption",
                      "bomb": "too_many_pixels", "twice": "duplicate_key", "a_b": "duplicate_key", "meta": "bad_json",
                      "caf_xe9": "bad_encoding"}
    # the first a_b (from a.b.jpg, sorted first) is kept; the second file with that key is the duplicate
    written = {k for tar in sorted(out.glob("*.tar")) for k in read_tar(tar)}
    assert written == {"img000", "img001", "img002", "a_b"}
    assert sum(json.loads((out / "sizes.json").read_text()).values()) == 4
    statuses = {r["key"]: r["status"] for r in pyarrow.parquet.read_table(out / "manifest.parquet").to_pylist() if r["key"] == "cut"}
    assert statuses == {"cut": "failed"}
    assert verify(out)["ok"]


def test_manifest_bad_rows_are_skipped_by_reason(tmp_path, capsys):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    rows = [
        b"key,image,caption",
        b"good1,ok.jpg,a red square",
        b"gone,missing.jpg,no such file",
        b"bytes,ok.jpg,caf\xe9 in latin-1",
        b"good1,ok.jpg,same key again",
        b"empty,ok.jpg,",
        b"good2,ok.jpg,another caption",
        b"short",
    ]
    manifest = tmp_path / "pairs.csv"
    manifest.write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "out"

    prepare_shards(manifest, out, shard_size=3)

    progress = capsys.readouterr().err
    assert "7/7" in progress and "sample/s" in progress and "failed=5" in progress

    stats = _stats(out)
    assert stats["failures_by_reason"] == {"bad_encoding": 1, "bad_manifest_row": 1, "duplicate_key": 1, "empty_caption": 1, "missing_file": 1}
    assert stats["successes"] == 2 and stats["count"] == 7
    assert {f["key"] for f in stats["failures"]} == {"gone", "000000002", "good1", "empty", "000000006"}
    assert any("pairs.csv row 3" in f["detail"] for f in stats["failures"])  # the non-UTF-8 row is named
    written = [k for tar in sorted(out.glob("*.tar")) for k in read_tar(tar)]
    assert written == ["good1", "good2"]


def test_unknown_or_missing_manifest_columns_are_user_errors_naming_them(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("image\tcaption\nx.jpg\thi\n")
    with pytest.raises(UserError, match=r"m\.tsv: no column 'text'"):
        prepare_shards(manifest, tmp_path / "out", columns=ManifestColumns(captions=("text",)), progress=False)
    manifest.write_text("path\tdescription\nx.jpg\thi\n")
    with pytest.raises(UserError, match=r"no image, audio or caption column.*\(columns: description, path\)"):
        prepare_shards(manifest, tmp_path / "out", progress=False)
