"""The emoji demo dataset builder: real files, a leak-free held-out split, a cache, and shards the CLI accepts."""

import json
import tarfile

import pytest
import soundfile
from PIL import Image

from data_tools.demo_emoji import build_emoji_dataset, sources
from data_tools.demo_emoji.__main__ import main as builder_main
from mmcl.errors import UserError
from pipelines.cli import main as mmcl_main  # noqa: E402

SMALL = dict(languages=["en", "es"], max_emoji=20, heldout_fraction=0.25, seed=3)


def rows(out, split):
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("emoji")
    return out, build_emoji_dataset(out, **SMALL)


def test_every_row_points_at_files_that_decode(built):
    out, summary = built
    all_rows = rows(out, "train") + rows(out, "heldout")
    assert len(all_rows) == summary["rows"]["train"] + summary["rows"]["heldout"] == 40
    assert {r["language"] for r in all_rows} == {"en", "es"}
    for row in all_rows:
        with Image.open(out / row["image"]) as image:
            assert image.size == (72, 72)
        info = soundfile.info(out / row["audio"])
        assert info.samplerate == 22050 and info.channels == 1 and info.duration > 0.1
        assert row["caption"] and ":" not in row["caption"] and "_" not in row["caption"]
        assert row["group"] and row["subgroup"] and row["codepoints"]
    classnames = (out / "classnames.txt").read_text(encoding="utf-8").splitlines()
    assert all(classnames[r["label"]] == r["subgroup"].replace("-", " ") for r in all_rows)
    assert "{c}" in (out / "zeroshot_classification_templates.txt").read_text(encoding="utf-8")
    assert "CC-BY 4.0" in (out / "LICENSES.md").read_text(encoding="utf-8")


def test_heldout_emoji_never_in_train_and_the_split_follows_the_seed(built, tmp_path):
    out, summary = built
    train = {r["codepoints"] for r in rows(out, "train")}
    heldout = {r["codepoints"] for r in rows(out, "heldout")}
    assert summary["emoji"] == {"train": 15, "heldout": 5} and not train & heldout

    again = build_emoji_dataset(tmp_path / "again", **SMALL, workers=1)  # the fixture used one per core
    assert again["cached"] is False
    for name in ["train.jsonl", "heldout.jsonl"] + [r["audio"] for r in rows(out, "train")]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    build_emoji_dataset(tmp_path / "other", **SMALL | {"seed": 4})
    assert {r["codepoints"] for r in rows(tmp_path / "other", "heldout")} != heldout


def test_skin_tone_variants_share_their_emojis_split(tmp_path):
    build_emoji_dataset(tmp_path, ["en"], max_emoji=150, skip_skin_tones=False, heldout_fraction=0.3)
    split_of = {r["codepoints"]: split for split in ("train", "heldout") for r in rows(tmp_path, split)}
    bases = {}
    for stem, split in split_of.items():
        base = "-".join(p for p in stem.split("-") if not 0x1F3FB <= int(p, 16) <= 0x1F3FF)
        bases.setdefault(base, set()).add(split)
    assert any(len(s) == 1 for s in bases.values()) and all(len(s) == 1 for s in bases.values())


def test_second_build_is_cached_and_a_changed_option_rebuilds(built):
    out, summary = built
    mtime = (out / "train.jsonl").stat().st_mtime_ns
    cached = build_emoji_dataset(out, **SMALL)
    assert cached["cached"] is True and cached["rows"] == summary["rows"]
    assert (out / "train.jsonl").stat().st_mtime_ns == mtime
    rebuilt = build_emoji_dataset(out, **SMALL | {"languages": ["en"]})
    assert rebuilt["cached"] is False and rebuilt["rows"]["train"] + rebuilt["rows"]["heldout"] == 20
    assert not (out / "audio" / "es").exists()  # the old build's files are gone
    build_emoji_dataset(out, **SMALL)  # back to the shared fixture's contents


def test_manifests_become_verified_shards_with_labels_on_the_heldout_split(built, tmp_path, capsys):
    out, summary = built
    columns = ["--image-col", "image", "--audio-col", "audio", "--caption-col", "caption", "--key-col", "key",
               "--keep-col", "language", "--keep-col", "subgroup", "--quiet"]
    assert mmcl_main(["shards", "prepare", str(out / "train.jsonl"), "--output", str(tmp_path / "train"), *columns]) == 0
    assert mmcl_main(["shards", "prepare", str(out / "heldout.jsonl"), "--output", str(tmp_path / "heldout"), *columns,
                      "--label-col", "label", "--classnames", str(out / "classnames.txt"),
                      "--templates", str(out / "zeroshot_classification_templates.txt")]) == 0
    for split in ("train", "heldout"):
        assert mmcl_main(["shards", "verify", str(tmp_path / split)]) == 0
        assert f"{summary['rows'][split]} samples" in capsys.readouterr().out
    with tarfile.open(tmp_path / "heldout" / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert {n.rsplit(".", 1)[1] for n in names} >= {"png", "flac", "txt", "cls", "json"}
    assert (tmp_path / "heldout" / "classnames.txt").read_text() == (out / "classnames.txt").read_text()


def test_unknown_language_or_voice_is_a_user_error_naming_it(tmp_path, capsys):
    with pytest.raises(UserError, match="'xx'"):
        build_emoji_dataset(tmp_path, ["en", "xx"])
    with pytest.raises(UserError, match="no voice 'no-such-voice'"):
        build_emoji_dataset(tmp_path, ["en"], voices={"en": "no-such-voice"})
    with pytest.raises(UserError, match="no language"):
        build_emoji_dataset(tmp_path, [])
    assert builder_main([str(tmp_path), "--languages", "en,klingon"]) == 2
    assert "'klingon'" in capsys.readouterr().err
    assert not (tmp_path / "train.jsonl").exists()


def test_emoji_without_image_or_name_are_skipped_and_counted(tmp_path, monkeypatch):
    real = sources.catalogue()
    no_image = sources.Emoji((0x10FFFD,), "Test", "test-missing")
    nameless = next(stem for stem in sources.images() if sources.name(sources.Emoji(
        tuple(int(c, 16) for c in stem.split("-")), "", ""), "en") is None)
    no_name = sources.Emoji(tuple(int(c, 16) for c in nameless.split("-")), "Test", "test-missing")
    monkeypatch.setattr(sources, "catalogue", lambda: (no_image, no_name) + real)
    summary = build_emoji_dataset(tmp_path, ["en"], max_emoji=5)
    assert summary["skipped"] == {"no_image": 1, "no_name": 1}
    assert summary["rows"]["train"] + summary["rows"]["heldout"] == 5


def test_a_name_spoken_as_silence_is_skipped_and_counted(tmp_path, monkeypatch):
    from data_tools.demo_emoji.speech import Speaker

    speak = Speaker.say
    monkeypatch.setattr(Speaker, "say", lambda self, text: speak(self, text)[:0] if " " in text else speak(self, text))
    summary = build_emoji_dataset(tmp_path, ["en"], max_emoji=30, heldout_fraction=0)
    spoken = rows(tmp_path, "train")
    assert summary["skipped"]["no_audio"] == 30 - len(spoken) > 0
    assert spoken and all(" " not in r["caption"] for r in spoken)
