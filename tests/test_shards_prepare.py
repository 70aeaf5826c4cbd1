"""prepare on the three input kinds: what lands in the shards and beside them."""

import io
import json

import pyarrow.parquet
import webdataset as wds
from PIL import Image

from data_tools.prepare import prepare_shards
from tests.shards_fixtures import flac_bytes, image_bytes, make_pairs, read_tar, run_cli


def test_folder_pairs_become_shards_with_sizes_and_manifest(tmp_path):
    src = make_pairs(tmp_path / "src", 7)
    (src / "img001.flac").write_bytes(flac_bytes())
    (src / "img002.json").write_text(json.dumps({"text": ["second caption"], "photographer": "ann"}))
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "--output", out, "--shard-size", "3", "--quiet") == 0

    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert json.loads((out / "sizes.json").read_text()) == {"shard-000000.tar": 3, "shard-000001.tar": 3, "shard-000002.tar": 1}
    first = read_tar(out / "shard-000000.tar")
    assert list(first) == ["img000", "img001", "img002"]
    assert first["img000"]["txt"] == b"caption number 0"
    assert set(first["img001"]) == {"jpg", "txt", "flac"}
    assert json.loads(first["img002"]["json"]) == {"photographer": "ann", "text": ["caption number 2", "second caption"]}
    assert "txt" not in first["img002"]  # several captions live in json["text"] only
    manifest = pyarrow.parquet.read_table(out / "manifest.parquet").to_pylist()
    assert [r["key"] for r in manifest] == [f"img{i:03d}" for i in range(7)]
    assert {r["status"] for r in manifest} == {"ok"} and all(len(r["hash"]) == 64 for r in manifest)
    stats = json.loads((out / "shard-000000_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed"]) == (3, 3, 0)
    assert not list(out.glob("*.tmp"))


def test_webdataset_reads_what_prepare_wrote(tmp_path):
    out = tmp_path / "out"
    prepare_shards(make_pairs(tmp_path / "src", 5), out, shard_size=2, progress=False)
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    rows = list(wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt"))
    assert [k for k, _, _ in rows] == [f"img{i:03d}" for i in range(5)]
    assert rows[4][1].size == (32, 24) and rows[4][2] == "caption number 4"


def test_class_folders_write_labels_and_clip_benchmark_files(tmp_path):
    src = tmp_path / "eval"
    for name in ("tabby_cat", "dog"):
        (src / name).mkdir(parents=True)
        for i in range(2):
            (src / name / f"{i}.png").write_bytes(image_bytes(fmt="PNG"))
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", src, "--class-folders", "--output", out, "--quiet",
                   "--resize-mode", "center_crop", "--image-size", "16") == 0

    samples = read_tar(out / "shard-000000.tar")
    assert {k: s["cls"] for k, s in samples.items()} == {"dog/0": b"0", "dog/1": b"0", "tabby_cat/0": b"1", "tabby_cat/1": b"1"}
    assert (out / "classnames.txt").read_text() == "dog\ntabby cat\n"
    assert (out / "nshards.txt").read_text() == "1\n"
    assert "{c}" in (out / "zeroshot_classification_templates.txt").read_text()
    img = Image.open(io.BytesIO(samples["dog/0"]["jpg"]))
    assert img.size == (16, 16)
