"""The README's "From your own files to a zero-shot number" recipe, run as written on generated data.

The commands are read from the README itself, so the test fails when they stop working. Only two things change:
the run is shortened (train.steps and the evaluation interval), and configs/ is found from the repository root
while the user's files sit in a temporary folder, the working directory.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from data_tools import demo_shapes
from pipelines.cli import main as mmcl

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 6, 3  # the README's 500 and 100, shortened: the commands are under test, not learning


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## From your own files to a zero-shot number"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    lines = block.replace("\\\n", " ").splitlines()  # continuation lines join their command
    commands = [shlex.split(line, comments=True) for line in lines if line.strip().startswith("mmcl ")]
    return [[word for word in command] for command in commands]


def shortened(command: list[str]) -> list[str]:
    out = []
    for word in command:
        word = re.sub(r"^train\.steps=\d+$", f"train.steps={STEPS}", word)
        word = re.sub(r"every: \d+", f"every: {EVERY}", word)
        out.append(str(ROOT / word) if word.startswith("configs/") else word)
    return out


def test_the_readme_commands_are_the_ones_this_test_runs():
    words = [command[:3] for command in readme_commands()]
    assert words == [["mmcl", "shards", "prepare"], ["mmcl", "shards", "verify"], ["mmcl", "shards", "stats"],
                     ["mmcl", "shards", "prepare"], ["mmcl", "train", "configs/demo.yaml"],
                     ["mmcl", "eval", "runs/first"]]
    train = readme_commands()[4]
    assert "train.steps=500" in train and any("every: 100" in word for word in train)


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """What a user brings: captioned photos (12 kinds of shape, 10 each) and a labelled evaluation folder."""
    demo_shapes.write_pairs(tmp_path / "photos", per_class=10, seed=0)
    demo_shapes.write_class_folders(tmp_path / "eval", per_class=3, seed=1)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_recipe_runs_as_written_on_a_users_files(user_files, capsys, caplog):
    for command in readme_commands():
        assert mmcl(shortened(command)[1:]) == 0, command
    printed = capsys.readouterr().out + caplog.text

    # Step 1: 120 samples make 8 shards of 16, enough for the config's 2 loader workers.
    assert len(list((user_files / "shards" / "train").glob("*.tar"))) == 8
    assert "shard size 16 for 120 samples" in printed
    # Step 3: periodic evaluations, the best checkpoint's alias and the closing summary.
    assert f"step {EVERY} eval: mine/top1" in printed and "run summary" in printed
    best = json.loads((user_files / "runs" / "first" / "checkpoints" / "best.json").read_text())
    assert (user_files / "runs" / "first" / "checkpoints" / "best").exists()
    # Step 4: the run folder was evaluated through its best checkpoint, under the task name training used.
    result = json.loads((user_files / "result.json").read_text())
    (task,) = result if isinstance(result, list) else [result]
    assert task["name"] == "mine" and 0 <= task["metrics"]["top1"] <= 1
    assert task["metrics"]["num_classes"] == 12 and task["metrics"]["num_samples"] == 36
    assert task["model"]["source"] == "runs/first"
    assert Path(task["model"]["checkpoint"]).name == f"step-{best['step']:08d}"
    assert (user_files / "report" / "summary.md").is_file()
