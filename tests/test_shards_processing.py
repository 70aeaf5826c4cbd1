"""Per-modality processing options, dedup, byte-sized shards, and workers not changing the result."""

import io

import pytest
import soundfile
from PIL import Image

from data_tools.audio import AudioOptions
from data_tools.image import ImageOptions, process_image
from data_tools.prepare import prepare_shards
from data_tools.sample import SampleOptions
from data_tools.text import normalize_caption
from tests.shards_fixtures import UserError, flac_bytes, image_bytes, make_pairs, read_tar


@pytest.mark.parametrize(
    "mode, only_if_bigger, expected",
    [
        ("none", False, (80, 40)),
        ("keep_ratio", False, (40, 20)),
        ("keep_ratio_largest", False, (20, 10)),
        ("center_crop", False, (20, 20)),
        ("border", False, (20, 20)),
        ("keep_ratio", True, (80, 40)),  # shorter side 40 is already under 100: no upscale
    ],
)
def test_resize_modes_give_the_documented_size(mode, only_if_bigger, expected):
    size = 100 if only_if_bigger else 20
    opts = ImageOptions(size=size, resize_mode=mode, only_if_bigger=only_if_bigger)
    ext, data, facts = process_image(image_bytes((80, 40)), "x", opts)
    stored = (facts["image_width"], facts["image_height"])
    assert ext == "jpg" and stored == expected == Image.open(io.BytesIO(data)).size
    assert (facts["source_width"], facts["source_height"]) == (80, 40)


def test_border_pads_with_black_and_keeps_the_picture_centred():
    _, data, _ = process_image(image_bytes((80, 40), (255, 255, 255), "PNG"), "x", ImageOptions(size=20, resize_mode="border", format="png"))
    img = Image.open(io.BytesIO(data))
    assert img.getpixel((10, 0)) == (0, 0, 0) and img.getpixel((10, 10)) == (255, 255, 255)


def test_output_formats_and_keeping_original_bytes():
    png = image_bytes(fmt="PNG")
    assert process_image(png, "x", ImageOptions(format="keep"))[:2] == ("png", png)
    assert process_image(png, "x", ImageOptions())[:2] == ("png", png)  # auto: no resize, no re-encoding
    assert process_image(png, "x", ImageOptions(resize_mode="keep_ratio", size=12))[0] == "jpg"  # auto: resized -> jpg
    ext, data, _ = process_image(png, "x", ImageOptions(format="webp"))
    assert ext == "webp" and Image.open(io.BytesIO(data)).format == "WEBP"
    gif = image_bytes(fmt="GIF")
    assert process_image(gif, "x", ImageOptions(format="keep"))[0] == "png"  # readers expect jpg/png/webp only
    with pytest.raises(UserError, match="--image-format keep"):
        ImageOptions(format="keep", resize_mode="center_crop")


def test_exif_orientation_is_applied_when_re_encoding():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    out = io.BytesIO()
    Image.new("RGB", (40, 20)).save(out, format="JPEG", exif=exif)
    facts = process_image(out.getvalue(), "x", ImageOptions(format="png"))[2]
    assert (facts["image_width"], facts["image_height"]) == (20, 40)
    assert process_image(out.getvalue(), "x", ImageOptions(format="keep"))[1] == out.getvalue()  # kept bytes keep their EXIF


def test_audio_is_downmixed_resampled_cut_and_stored_as_flac(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "clip.wav").write_bytes(flac_bytes(seconds=2.0, rate=16000, channels=2, fmt="WAV"))
    (src / "clip.txt").write_text("a beep")
    out = tmp_path / "out"
    opts = SampleOptions(audio=AudioOptions(sample_rate=8000, mono=True, max_seconds=1.5))

    prepare_shards(src, out, options=opts, progress=False)

    flac = read_tar(out / "shard-000000.tar")["clip"]["flac"]
    info = soundfile.info(io.BytesIO(flac))
    assert (info.format, info.channels, info.samplerate, info.frames) == ("FLAC", 1, 8000, 12000)


def test_captions_are_repaired_and_whitespace_collapsed():
    assert normalize_caption("  caf\u00c3\u00a9\n  au   lait ") == "caf\u00e9 au lait"
    assert normalize_caption("caf\u00c3\u00a9", fix_unicode=False) == "caf\u00c3\u00a9"


def test_dedup_skips_repeated_content(tmp_path):
    src = make_pairs(tmp_path / "src", 3)
    (src / "later.jpg").write_bytes((src / "img001.jpg").read_bytes())
    (src / "later.txt").write_bytes((src / "img001.txt").read_bytes())
    out = tmp_path / "out"

    summary = prepare_shards(src, out, dedup=True, progress=False)

    assert summary["merged"]["failures_by_reason"] == {"duplicate_content": 1}
    assert [f["key"] for f in summary["merged"]["failures"]] == ["later"]  # the first in input order is kept
    assert {k for tar in out.glob("*.tar") for k in read_tar(tar)} == {"img000", "img001", "img002"}
