"""The README's "From your own files to a zero-shot number" recipe and its "Fine-tune a pretrained CLIP"
walk-through, run as written on generated data.

The commands are read from the README itself, so the test fails when they stop working. Only two things change:
the runs are shortened (train.steps and the evaluation interval), and configs/ is found from the repository root
while the user's files sit in a temporary folder, the working directory.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import open_clip
import pytest

from data_tools import demo_shapes
from pipelines.cli import main as mmcl

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVERY = 6, 3  # the README's 500 and 100, shortened: the commands are under test, not learning


RECIPE, FINE_TUNE = "## From your own files to a zero-shot number", "## Fine-tune a pretrained CLIP"


def readme_lines(title: str) -> list[str]:
    """The commands of the first bash block after `title`, comments dropped, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(title):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def readme_commands(title: str = RECIPE) -> list[list[str]]:
    return [shlex.split(line, comments=True) for line in readme_lines(title) if line.startswith("mmcl ")]


def run_line(line: str) -> None:
    """An `mmcl` command in this process (shortened); any other shell line through bash."""
    if line.startswith("mmcl "):
        command = shortened(shlex.split(line, comments=True))
        assert mmcl(command[1:]) == 0, command
    else:
        subprocess.run(line, shell=True, check=True, executable="/bin/bash")


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
    assert [line.split()[:3] for line in readme_lines(FINE_TUNE)] == [
        ["mmcl", "export", "runs/first"], ["printf", "'open_clip:", "{name:"], ["mmcl", "eval", "pretrained.yaml"],
        ["mmcl", "train", "configs/demo.yaml"], ["mmcl", "eval", "runs/tuned"], ["mmcl", "export", "runs/tuned"],
        ["mmcl", "eval", "wise"], ["mmcl", "export", "wise"]]
    tune = readme_commands(FINE_TUNE)[2]
    assert "train.steps=300" in tune and any("every: 100" in word for word in tune)


@pytest.fixture
def user_files(tmp_path, monkeypatch):
    """What a user brings: captioned photos (12 kinds of shape, 10 each) and a labelled evaluation folder."""
    demo_shapes.write_pairs(tmp_path / "photos", per_class=10, seed=0)
    demo_shapes.write_class_folders(tmp_path / "eval", per_class=3, seed=1)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_recipe_runs_as_written_on_a_users_files(user_files, capsys, caplog):
    for line in readme_lines(RECIPE):
        run_line(line)
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

    # The fine-tuning walk-through, from the run above.
    for line in readme_lines(FINE_TUNE):
        run_line(line)
    scores = {name: json.loads((user_files / f"{name}.json").read_text())["metrics"]["top1"]
              for name in ("before", "tuned", "wise")}
    assert all(0 <= value <= 1 for value in scores.values()), scores
    tuned_best = json.loads((user_files / "runs" / "tuned" / "checkpoints" / "best.json").read_text())
    assert (Path(tuned_best["folder"]) / "ema" / "model.safetensors").is_file()
    open_clip.create_model_and_transforms(f"local-dir:{user_files / 'wise-open_clip'}")  # strict load
