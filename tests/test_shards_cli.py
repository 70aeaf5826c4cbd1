"""The `mmcl shards` commands as a user meets them: help, the mmcl entry point, one-line errors."""

import pytest

from tests.shards_fixtures import UserError, make_pairs, run_cli


@pytest.mark.parametrize("command, expected", [
    ("prepare", ["--class-folders", "--num-parts", "--resize-mode", "--audio-rate", "--dedup", "resumes", "--eval-of",
                 "class names such as 'dog'", "sample count / 16"]),
    ("verify", ["sizes.json", "non-zero", "--against"]),
    ("stats", ["--plot"]),
    ("merge", ["--num-parts"]),
])
def test_every_subcommand_has_help(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("shards", command, "--help")
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(word in text for word in expected)


def test_bad_flags_are_user_errors_naming_the_flag(tmp_path):
    src = make_pairs(tmp_path / "src", 1)
    with pytest.raises(UserError, match="--pattern 'shard.tar'"):
        run_cli("shards", "prepare", src, "-o", tmp_path / "out", "--pattern", "shard.tar")
    with pytest.raises(UserError, match="--shard-size 0"):
        run_cli("shards", "prepare", src, "-o", tmp_path / "out", "--shard-size", "0")
    with pytest.raises(UserError, match="--part 2 --num-parts 2"):
        run_cli("shards", "prepare", src, "-o", tmp_path / "out", "--num-parts", "2", "--part", "2")


def test_mmcl_entry_point_prepares_and_reports_errors_in_one_line(tmp_path, capsys):
    from pipelines.cli import main  # in-process: the console script calls this main()

    src = make_pairs(tmp_path / "src", 3)
    out = tmp_path / "out"
    assert main(["shards", "prepare", str(src), "--output", str(out), "--shard-size", "2", "--quiet"]) == 0
    assert "3 of 3 samples written" in capsys.readouterr().out

    assert main(["shards", "prepare", str(tmp_path / "nowhere"), "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "nowhere: no such file or directory" in err
