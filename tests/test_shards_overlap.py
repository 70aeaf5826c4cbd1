"""Evaluation samples also in a training set: same files, and the same picture re-encoded or resized."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from webdataset import TarWriter

from data_tools.fingerprints import PHASH_DISTANCE, image_phash
from data_tools.overlap import find_overlap
from tests.shards_fixtures import UserError, flac_bytes, image_bytes, run_cli


def _scene(seed: int, size=(96, 64)) -> Image.Image:
    """A plain background with a few coloured ellipses: unlike a plain colour, it has a perceptual hash."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        draw.ellipse([x, y, x + rng.integers(10, 40), y + rng.integers(10, 40)], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def _encoded(img: Image.Image, fmt="JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _phash(data: bytes):
    return image_phash(Image.open(io.BytesIO(data)))


def _distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def test_copies_hash_close_and_distinct_pictures_far():
    for seed in range(4):
        img = _scene(seed)
        original = _phash(_encoded(img, quality=95))
        for copy in (_encoded(img, quality=60), _encoded(img.resize((144, 96))), _encoded(img, "PNG")):
            assert _distance(original, _phash(copy)) <= PHASH_DISTANCE
    hashes = [_phash(_encoded(_scene(seed))) for seed in range(12)]
    assert min(_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]) > PHASH_DISTANCE
    assert _phash(image_bytes()) is None  # a plain colour has no perceptual hash: all would look alike


def test_a_copy_rotated_by_its_exif_tag_matches_the_upright_picture():
    img = _scene(7)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    upright = img.transpose(Image.Transpose.ROTATE_270)
    assert _distance(_phash(_encoded(img, exif=exif)), _phash(_encoded(upright))) <= PHASH_DISTANCE


@pytest.fixture
def sets(tmp_path):
    """A training folder of 6 pictures (one with audio) and an evaluation manifest of 5 samples, 3 of them copies."""
    train_src = tmp_path / "train_src"
    train_src.mkdir()
    for i in range(6):
        (train_src / f"t{i}.jpg").write_bytes(_encoded(_scene(i), quality=90))
        (train_src / f"t{i}.txt").write_text(f"training picture {i}")
    (train_src / "t5.flac").write_bytes(flac_bytes())
    eval_src = tmp_path / "eval_src"
    eval_src.mkdir()
    (eval_src / "same.jpg").write_bytes((train_src / "t1.jpg").read_bytes())
    (eval_src / "reencoded.jpg").write_bytes(_encoded(_scene(3).resize((72, 48)), quality=60))
    (eval_src / "sound.flac").write_bytes(flac_bytes())
    (eval_src / "new1.jpg").write_bytes(_encoded(_scene(100)))
    (eval_src / "new2.jpg").write_bytes(_encoded(_scene(101)))
    manifest = eval_src / "eval.csv"
    manifest.write_text("key,image,audio,label\nsame,same.jpg,,0\nreencoded,reencoded.jpg,,1\nsound,,sound.flac,0\n"
                        "new1,new1.jpg,,1\nnew2,new2.jpg,,0\n")
    train = tmp_path / "train"
    assert run_cli("shards", "prepare", train_src, "-o", train, "--shard-size", "3", "--quiet") == 0
    return manifest, train, tmp_path / "eval"


def test_prepare_eval_of_warns_naming_each_copy(sets, capsys):
    manifest, train, out = sets
    capsys.readouterr()

    assert run_cli("shards", "prepare", manifest, "-o", out, "--eval-of", train, "--quiet") == 0

    text = capsys.readouterr().out
    assert f"warning: 3 of the 5 samples of {out} are also in {train}:" in text
    assert "shard-000000.tar:same = shard-000000.tar:t1 (same image file)" in text
    assert "shard-000000.tar:reencoded = shard-000001.tar:t3 (similar image:" in text
    assert "shard-000000.tar:sound = shard-000001.tar:t5 (same audio file)" in text
    assert "new1" not in text and "new2" not in text
    assert f"mmcl shards verify {out} --against {train}" in text


def test_verify_against_fails_and_lists_every_copy(sets, capsys):
    manifest, train, out = sets
    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet") == 0
    capsys.readouterr()

    assert run_cli("shards", "verify", out, "--against", train, "--json") == 1

    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == [f"3 of 5 samples are also in the training set {train} (each named in the overlap report)"]
    assert {m["key"]: (m["train_key"], m["how"].split(":")[0]) for m in report["overlap"]["matches"]} == {
        "same": ("t1", "same image file"), "reencoded": ("t3", "similar image"), "sound": ("t5", "same audio file")}
    assert run_cli("shards", "verify", train, "--against", out) == 1  # either way round
    assert run_cli("shards", "verify", out) == 0  # without --against, copies are no problem


def test_sets_without_a_manifest_are_hashed_from_their_shards(tmp_path):
    picture = _encoded(_scene(5), quality=90)
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    for folder, samples in ((train, [("a", picture), ("b", _encoded(_scene(6)))]),
                            (evaluation, [("x", picture), ("y", _encoded(_scene(5).resize((60, 40)), quality=70)),
                                          ("z", _encoded(_scene(8)))])):
        folder.mkdir()
        with TarWriter(str(folder / "000.tar")) as tar:
            for key, data in samples:
                tar.write({"__key__": key, "jpg": data, "txt": "written by another tool"})

    report = find_overlap(evaluation, train)

    assert report["hashes_from"]["train"].startswith("the shards")
    assert [(m["key"], m["train_key"], m["how"].split(":")[0]) for m in report["matches"]] == [
        ("x", "a", "same image file"), ("y", "a", "similar image")]
    assert (report["eval_samples"], report["train_samples"]) == (3, 2)


def test_near_search_finds_exactly_the_pairs_within_the_distance():
    """The banded search against comparing every pair, on random hashes and copies with 1..6 flipped bits."""
    from data_tools.overlap import _NearIndex

    rng = np.random.default_rng(0)
    evals = [int(v) for v in rng.integers(0, 2**63, 300, dtype=np.int64)]
    train = [int(v) for v in rng.integers(0, 2**63, 2000, dtype=np.int64)]
    for i in range(60):  # copies of evaluation hashes with i % 6 + 1 bits flipped
        flipped = evals[i]
        for bit in rng.choice(63, i % 6 + 1, replace=False):
            flipped ^= 1 << int(bit)
        train.append(flipped)
    index = _NearIndex([("k", "s", None, None, h) for h in evals])

    found = {(t, e) for t, e, _ in index.pairs(np.array(train, dtype=np.uint64))}

    expected = {(t, e) for t, th in enumerate(train) for e, eh in enumerate(evals) if _distance(th, eh) <= PHASH_DISTANCE}
    assert found == expected and len(expected) >= 40


def test_eval_of_a_folder_that_is_no_shard_set_is_refused_first(tmp_path):
    with pytest.raises(UserError, match="--eval-of .*nowhere: not a directory of training shards"):
        run_cli("shards", "prepare", tmp_path, "-o", tmp_path / "out", "--eval-of", tmp_path / "nowhere")


def test_a_picture_differing_only_in_colour_is_no_copy(tmp_path):
    """Same shape, same place, another colour: the grey perceptual hash alone calls it a copy, the colour
    thumbnails tell them apart; the same picture re-encoded at another size still matches."""
    import random

    from data_tools import demo_shapes

    red, blue = (demo_shapes.draw(colour, "circle", random.Random(5), size=96) for colour in ("red", "blue"))
    assert _distance(_phash(_encoded(red)), _phash(_encoded(blue))) <= PHASH_DISTANCE
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    for folder, samples in ((train, [("red", _encoded(red, quality=90))]),
                            (evaluation, [("blue", _encoded(blue, quality=90)),
                                          ("red_small", _encoded(red.resize((64, 64)), quality=70))])):
        folder.mkdir()
        with TarWriter(str(folder / "000.tar")) as tar:
            for key, data in samples:
                tar.write({"__key__": key, "jpg": data, "txt": "a circle"})

    report = find_overlap(evaluation, train)

    assert [(m["key"], m["train_key"]) for m in report["matches"]] == [("red_small", "red")]
