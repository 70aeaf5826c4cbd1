"""What resizing did to images (cropped, padded, upscaled) is counted per set; printed numbers read as numbers."""

import json

import pyarrow.parquet
import pytest

from data_tools.image import ImageOptions, resize_effects
from data_tools.stats import number
from tests.shards_fixtures import image_bytes, run_cli


@pytest.mark.parametrize("mode, size, only_if_bigger, effects", [
    ("center_crop", (64, 32), False, {"cropped"}),  # the square keeps the middle 32 of 64 columns
    ("center_crop", (40, 40), False, set()),  # a square shrinks whole
    ("center_crop", (16, 16), False, {"upscaled"}),
    ("center_crop", (16, 8), False, {"cropped", "upscaled"}),
    ("center_crop", (16, 8), True, set()),  # kept at 16x8: smaller than the square, so nothing is cut
    ("border", (64, 32), False, {"padded"}),  # 32x16 in a 32x32 square
    ("border", (16, 16), False, {"upscaled"}),
    ("border", (16, 16), True, {"padded"}),  # left at 16x16 inside the 32x32 square
    ("keep_ratio", (16, 8), False, {"upscaled"}),  # the shorter side goes to 32
    ("keep_ratio", (64, 40), False, set()),
    ("keep_ratio_largest", (16, 8), False, {"upscaled"}),
    ("none", (16, 8), False, set()),
])
def test_resize_effects(mode, size, only_if_bigger, effects):
    found = resize_effects(*size, ImageOptions(size=32, resize_mode=mode, only_if_bigger=only_if_bigger))
    assert {name for name, happened in found.items() if happened} == effects


def test_stats_count_cropped_padded_and_upscaled_images(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name, size in {"wide": (64, 32), "small": (16, 16), "square": (40, 40), "strip": (16, 8)}.items():
        (src / f"{name}.jpg").write_bytes(image_bytes(size))
        (src / f"{name}.txt").write_text(name)
    out = tmp_path / "out"
    assert run_cli("shards", "prepare", src, "-o", out, "--resize-mode", "center_crop", "--image-size", "32", "--quiet") == 0

    assert json.loads((out / "stats.json").read_text())["images_resized"] == {"cropped": 2, "padded": 0, "upscaled": 2}
    rows = {r["key"]: r for r in pyarrow.parquet.read_table(out / "manifest.parquet").to_pylist()}
    assert {k for k, r in rows.items() if r["cropped"]} == {"wide", "strip"}
    assert {k for k, r in rows.items() if r["upscaled"]} == {"small", "strip"}
    assert (rows["wide"]["source_width"], rows["wide"]["image_width"]) == (64, 32)

    capsys.readouterr()
    assert run_cli("shards", "stats", out) == 0
    text = capsys.readouterr().out
    assert "images when prepared (--resize-mode center_crop --image-size 32): 2 cropped, 0 padded, 2 upscaled" in text
    assert run_cli("shards", "stats", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images_resized_when_prepared"] == {"cropped": 2, "padded": 0, "upscaled": 2}


@pytest.mark.parametrize("value, shown", [
    (941, "941"), (941.0, "941"), (0, "0"), (1.120362811791383, "1.12"), (2.5, "2.5"), (19.8765, "19.88"),
    (0.000123456, "0.0001235"), (12345.678, "12346"), (-0.25, "-0.25"),
])
def test_numbers_print_as_integers_or_four_significant_digits(value, shown):
    assert number(value) == shown


def test_stats_text_shows_counts_as_integers_and_means_briefly(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("caption\na\nbb\ncccc\n")
    out = tmp_path / "out"
    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet") == 0
    capsys.readouterr()

    assert run_cli("shards", "stats", out) == 0

    text = capsys.readouterr().out
    assert "  with text: 3\n" in text
    assert "caption_chars: min 1  mean 2.33  median 2  max 4" in text
