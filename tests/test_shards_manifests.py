"""Manifests in every supported format give the same shards; columns map to modalities."""

import gzip
import json

import pyarrow
import pyarrow.parquet
import pytest

from data_tools.manifests import ManifestColumns
from data_tools.prepare import prepare_shards
from data_tools.verify import verify
from tests.shards_fixtures import flac_bytes, image_bytes, read_tar

ROWS = [
    {"id": "a", "img": "pics/a.jpg", "sound": "", "text": "first caption", "label": 3, "site": "x"},
    {"id": "b", "img": "pics/b.jpg", "sound": "b.flac", "text": "second caption", "label": 1, "site": "y"},
]
COLUMNS = ManifestColumns(image="img", audio="sound", captions=("text",), label="label", key="id", keep=("site",))


def _write(path, rows):
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
        return
    if name.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        sep = "\t" if name.endswith(".tsv") else ","
        text = sep.join(rows[0]) + "\n" + "".join(sep.join(str(v) for v in r.values()) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())


@pytest.mark.parametrize("name", ["m.csv", "m.tsv.gz", "m.jsonl", "m.jsonl.gz", "m.parquet"])
def test_every_manifest_format_gives_the_same_samples(tmp_path, name):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(image_bytes())
    (tmp_path / "pics" / "b.jpg").write_bytes(image_bytes())
    (tmp_path / "b.flac").write_bytes(flac_bytes())
    _write(tmp_path / name, ROWS)
    out = tmp_path / "out"

    prepare_shards(tmp_path / name, out, columns=COLUMNS, progress=False)

    samples = read_tar(out / "shard-000000.tar")
    assert sorted(samples) == ["a", "b"]
    assert set(samples["a"]) == {"jpg", "txt", "cls", "json"}
    assert set(samples["b"]) == {"jpg", "txt", "cls", "json", "flac"}
    assert samples["b"]["txt"] == b"second caption" and samples["b"]["cls"] == b"1"
    assert json.loads(samples["a"]["json"]) == {"site": "x"}
    assert verify(out)["ok"]


def test_list_cells_and_several_caption_columns_keep_every_caption(tmp_path):
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    rows = [{"image": "a.jpg", "caption": ["one", " two "], "alt": "three"}]
    _write(tmp_path / "m.jsonl", rows)
    out = tmp_path / "out"

    prepare_shards(tmp_path / "m.jsonl", out, columns=ManifestColumns(captions=("caption", "alt")), progress=False)

    sample = read_tar(out / "shard-000000.tar")["000000000"]
    assert json.loads(sample["json"]) == {"text": ["one", "two", "three"]}
