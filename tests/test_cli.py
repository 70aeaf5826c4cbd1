"""The `mmcl` command: help, exit codes, one-line user errors.

The installed console script runs in a subprocess where the process boundary matters (exit code, stderr);
the rest call the same `main` in-process, which is faster.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main

SUBCOMMANDS = ("shards", "train", "eval", "demo", "export", "config", "models")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def mmcl(capsys):
    def run(*args: str) -> Result:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's --help and usage errors
            code = exit_.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_console_script_help_lists_subcommands():
    result = subprocess.run(["mmcl", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name} " in result.stdout


def test_console_script_user_error_is_one_line_without_traceback():
    result = subprocess.run(["mmcl", "train", "configs/demo.yaml", "optim.lrr=1"], capture_output=True, text=True,
                            timeout=120)
    assert_one_line_user_error(result, "optim.lrr", "configs/demo.yaml")


@pytest.mark.parametrize("args", [(c, "--help") for c in SUBCOMMANDS] + [("config", "show", "--help")])
def test_every_subcommand_explains_itself(mmcl, args):
    result = mmcl(*args)
    assert result.returncode == 0, result.stderr
    assert "usage: mmcl" in result.stdout and "options:" in result.stdout


def assert_one_line_user_error(result, *fragments: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmcl: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_misspelled_key_exits_nonzero_naming_it(mmcl):
    assert_one_line_user_error(mmcl("config", "show", "configs/demo.yaml", "optim.lrr=1"), "optim.lrr")


def test_wrong_config_fails_before_any_data_is_read(mmcl, tmp_path):
    # The shards do not exist; the config error must win because it is found first.
    result = mmcl("train", "configs/demo.yaml", f"data.train_shards={tmp_path}/none", "data.modalities=[image, audio]")
    assert_one_line_user_error(result, "data.modalities", "audio")


def test_missing_inputs_are_one_line_errors(mmcl, tmp_path):
    assert_one_line_user_error(mmcl("eval", str(tmp_path), "--data", str(tmp_path)), "not a model checkpoint")
    assert_one_line_user_error(mmcl("train", str(tmp_path / "missing.yaml")), "config file not found")
    assert_one_line_user_error(mmcl("models", "show", "nope"), "unknown model 'nope'")


def test_config_show_prints_resolved_documented_config(mmcl):
    result = mmcl("config", "show", "configs/demo.yaml", "data.batch_size=7")
    assert result.returncode == 0
    assert "  batch_size: 7" in result.stdout
    assert "# Samples per batch on each process." in result.stdout


def test_config_show_documents_the_fields_of_an_unset_section(mmcl):
    """configs/demo.yaml has no `eval`: its fields are still listed, commented out, with defaults and descriptions."""
    result = mmcl("config", "show", "configs/demo.yaml")
    lines = result.stdout.splitlines()
    start = lines.index("eval: null  # unset; its fields, when set:")
    section = lines[start + 1:]
    section = section[:next((i for i, line in enumerate(section) if not line.startswith("  ")), len(section))]
    assert "  # every: (required)" in section and "  # best_mode: max" in section
    assert "  # Evaluate every this many steps (and after the last step)." in section
    assert yaml.safe_load(result.stdout)["eval"] is None


def test_config_show_without_a_config_names_the_ones_at_hand(mmcl):
    assert_one_line_user_error(mmcl("config", "show"), "configs/demo.yaml")


def test_models_list_says_what_each_model_is(mmcl):
    result = mmcl("models", "list")
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[:4]}
    assert set(rows) == {"tiny", "tiny-audio", "small", "vit-b-32-audio"}
    assert "AST-style" in rows["tiny-audio"] and "PANN-style" in rows["small"]


def test_usage_errors_exit_nonzero(mmcl):
    assert mmcl().returncode == 2
    assert mmcl("train").returncode == 2


def test_top_level_help_imports_no_recipe():
    """`mmcl --help` lists every command without importing torch; a command's own parser comes with its module."""
    probe = ("import sys\nfrom pipelines.cli import build_parser\n"
             "build_parser(['--help'])\nprint('torch' in sys.modules)\n"
             "build_parser(['-v', 'shards', 'verify'])\nprint('data_tools.cli' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr


LIGHT = [  # help and user errors: answered before torch (seconds to import) is needed
    ["train", "--help"], ["eval", "--help"], ["demo", "--help"], ["shards", "prepare", "--help"],
    ["train", "configs/demo.yaml", "data.batchsize=3"], ["train", "missing.yaml"],
    ["eval", "no-such-model", "--data", "."], ["eval", "tiny", "--data", "missing/"],
    ["shards", "prepare", "missing/", "--output", "out"], ["config", "show", "configs/demo.yaml"], ["models", "list"],
    ["export", "--help"], ["export", "missing/", "--format", "open_clip", "--output", "out"],
]


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_help_and_user_errors_do_not_import_torch(args, tmp_path):
    probe = ("import sys\nfrom pipelines.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parent.parent)
    assert result.stderr.strip().splitlines()[-1] == "torch not imported", result.stderr
