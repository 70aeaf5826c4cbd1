"""A manifest's label column holding class names ("dog") becomes class indices and classnames.txt."""

import json

import pytest

from tests.shards_fixtures import UserError, image_bytes, read_tar, run_cli


def _manifest(tmp_path, labels, header="image,category"):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    path = tmp_path / "m.csv"
    path.write_text(header + "\n" + "".join(f"ok.jpg,{label}\n" for label in labels))
    return path


def _labels(out):
    """Row number -> cls, over every shard."""
    return {int(key): int(sample["cls"]) for tar in sorted(out.glob("*.tar")) for key, sample in read_tar(tar).items()}


def _failed(out):
    stats = json.loads((out / "stats.json").read_text())
    return {int(f["key"]): f"{f['reason']}: {f['detail']}" for f in stats["failures"]}


def test_text_labels_are_numbered_in_sorted_order_with_classnames_written(tmp_path):
    manifest = _manifest(tmp_path, ["dog", "cat", "golden_retriever", "dog", " cat "])
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--label-col", "category", "--quiet") == 0

    # sorted: cat 0, dog 1, golden_retriever 2 (as torchvision's ImageFolder numbers class folders)
    assert _labels(out) == {0: 1, 1: 0, 2: 2, 3: 1, 4: 0}
    assert (out / "classnames.txt").read_text() == "cat\ndog\ngolden retriever\n"  # _ as a space, as for class folders
    assert not (out / "zeroshot_classification_templates.txt").exists()  # only with --templates: eval has a built-in set
    assert (out / "nshards.txt").read_text() == "1\n"


def test_classnames_file_sets_the_order_and_an_unknown_label_is_a_counted_skip(tmp_path):
    manifest = _manifest(tmp_path, ["dog", "wolf", "golden_retriever", "cat"])
    names = tmp_path / "names.txt"
    names.write_text("golden retriever\ndog\ncat\n")
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--label-col", "category", "--classnames", names, "--quiet") == 0

    assert _labels(out) == {0: 1, 2: 0, 3: 2}  # golden_retriever matches "golden retriever"
    assert _failed(out) == {1: "bad_label: " + f"{manifest} row 2: label 'wolf' is not one of the 3 names in --classnames"}
    assert (out / "classnames.txt").read_text() == "golden retriever\ndog\ncat\n"


def test_numbers_among_class_names_and_empty_cells_are_bad_labels(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(image_bytes())
    rows = [{"image": "ok.jpg", "label": v} for v in ("dog", 3, None, "cat", "10", ["dog", 1], "dog")]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--quiet") == 0

    assert _labels(out) == {0: 1, 3: 0, 6: 1}
    failed = _failed(out)
    assert "row 2: label 3 is a number in a column of class names such as 'cat'" in failed[1]
    assert "row 3: the label is null" in failed[2]
    assert "row 5: label '10' is a number in a column of class names" in failed[4]  # never a class named "10"
    assert "row 6: in label list ['dog', 1]: label 1 is a number in a column of class names" in failed[5]
    assert (out / "classnames.txt").read_text() == "cat\ndog\n"


def test_a_few_words_in_a_column_of_indices_are_bad_labels_and_the_indices_stay(tmp_path):
    """Hostile manifests: stray text in an index column loses those rows only, never the good ones."""
    manifest = _manifest(tmp_path, ["0", "2", "cat", "1", "1"])
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--label-col", "category", "--quiet") == 0

    assert _labels(out) == {0: 0, 1: 2, 3: 1, 4: 1}
    assert "'cat'" in _failed(out)[2]
    assert not (out / "classnames.txt").exists()


def test_integer_labels_stay_indices_and_must_fit_the_classnames(tmp_path):
    manifest = _manifest(tmp_path, ["0", "2", "1"])
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    out = tmp_path / "out"

    assert run_cli("shards", "prepare", manifest, "-o", out, "--label-col", "category", "--classnames", names, "--quiet") == 0

    assert _labels(out) == {0: 0, 2: 1}
    assert "label 2 is not a class index of --classnames (2 names: 0..1)" in _failed(out)[1]


def test_every_part_numbers_the_classes_from_the_whole_manifest(tmp_path):
    # Part 1 (rows 3..5) holds no "ant": numbered from its own rows, "bee" would become 0.
    manifest = _manifest(tmp_path, ["ant", "cow", "bee", "bee", "cow", "bee"])
    out = tmp_path / "out"
    argv = ["shards", "prepare", manifest, "-o", out, "--label-col", "category", "--shard-size", "3", "--num-parts", "2", "--quiet"]

    assert run_cli(*argv, "--part", "1") == 0
    assert _labels(out) == {3: 1, 4: 2, 5: 1}
    assert run_cli(*argv, "--part", "0") == 0

    assert _labels(out) == {0: 0, 1: 2, 2: 1, 3: 1, 4: 2, 5: 1}
    assert (out / "classnames.txt").read_text() == "ant\nbee\ncow\n"


def test_a_classnames_file_listing_a_name_twice_is_refused(tmp_path):
    manifest = _manifest(tmp_path, ["dog"])
    names = tmp_path / "names.txt"
    names.write_text("dog\ncat\ndog\n")
    with pytest.raises(UserError, match=r"--classnames: 'dog' is listed twice \(lines 1 and 3\)"):
        run_cli("shards", "prepare", manifest, "-o", tmp_path / "out", "--label-col", "category", "--classnames", names, "--quiet")
