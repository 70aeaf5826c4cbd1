"""prepare on the three input kinds: what lands in the shards and beside them."""

import io
import json

import pyarrow.parquet
import pytest
import webdataset as wds
from PIL import Image

from data_tools.prepare import prepare_shards
from data_tools.verify import verify
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
    assert manifest[0]["source_bytes"] == (src / "img000.jpg").stat().st_size + (src / "img000.txt").stat().st_size
    assert manifest[0]["source"] == str(src / "img000") and manifest[0]["shard"] == "shard-000000.tar"
    stats = json.loads((out / "shard-000000_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed"]) == (3, 3, 0)
    assert not list(out.glob("*.tmp"))


def _three_kinds(root):
    """The same four images as folder pairs, as class folders, and as a csv manifest."""
    pairs = make_pairs(root / "pairs", 4)
    for i in range(4):
        (root / "classes" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / "classes" / f"c{i % 2}" / f"img{i:03d}.jpg").write_bytes((pairs / f"img{i:03d}.jpg").read_bytes())
    manifest = root / "pairs.csv"
    manifest.write_text("image,caption\n" + "".join(f"pairs/img{i:03d}.jpg,caption number {i}\n" for i in range(4)))
    return {"folder": pairs, "class_folders": root / "classes", "manifest": manifest}


@pytest.mark.parametrize("kind", ["folder", "class_folders", "manifest"])
def test_every_input_kind_gives_shards_that_verify_and_webdataset_accept(tmp_path, kind):
    out = tmp_path / "out"
    prepare_shards(_three_kinds(tmp_path)[kind], out, layout=kind, shard_size=3, progress=False)

    assert verify(out)["ok"]
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    rows = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(rows) == 4 == sum(json.loads((out / "sizes.json").read_text()).values())
    assert all(row["jpg"].size == (32, 24) for row in rows)
    if kind == "class_folders":
        assert [row["cls"] for row in rows] == [0, 0, 1, 1]
    else:
        assert [row["txt"] for row in rows] == [f"caption number {i}" for i in range(4)]


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
    assert not (out / "zeroshot_classification_templates.txt").exists()  # only with --templates: eval has a built-in set
    img = Image.open(io.BytesIO(samples["dog/0"]["jpg"]))
    assert img.size == (16, 16)
