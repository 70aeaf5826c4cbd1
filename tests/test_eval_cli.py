"""`mmcl eval` through the CLI: task files, retrieval with several captions, geometry, reports, --compare,
batch-size independence, and open_clip models by config name checked against open_clip's own zero-shot path."""

from __future__ import annotations

import json
import random

import numpy as np
import open_clip
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import save_file

from data_tools import demo_shapes
from data_tools.prepare import prepare_shards
from mmcl.eval.report import flatten
from mmcl.models import create_model, save_model
from pipelines.cli import main as mmcl
from pipelines.evaluate import zero_shot_classification
from tests.test_eval_audio import one_thread  # noqa: F401 (an autouse fixture)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    pairs = demo_shapes.write_pairs(root / "pairs", per_class=2, seed=0)  # 24 captioned images
    prepare_shards(pairs, root / "pair_shards", shard_size=8, progress=False)
    classes = demo_shapes.write_class_folders(root / "classes", per_class=2, seed=1)
    prepare_shards(classes, root / "class_shards", layout="class_folders", shard_size=8, progress=False,
                   templates=list(demo_shapes.EVAL_TEMPLATES))
    rows = [{"image": f"pairs/{p.name}", "text": [p.with_suffix(".txt").read_text(), "a shape."]}
            for p in sorted(pairs.glob("*.jpg"))]
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "tasks.yaml").write_text(f"""tasks:
  - {{type: retrieval, name: captions, data: {{path: {root / 'captions.jsonl'}}}, modalities: [text, image]}}
  - {{type: geometry, name: shapes-geometry, data: {{path: {root / 'pair_shards'}}}}}
  - {{type: zeroshot_classification, name: shapes, data: {{path: {root / 'class_shards'}}}}}
""")
    return root


def test_task_file_with_report_and_compare(data, tmp_path, capsys):
    out = tmp_path / "a.json"
    assert mmcl(["eval", "tiny", "--tasks", str(data / "tasks.yaml"), "--output", str(out),
                 "--report-dir", str(tmp_path / "report"), "--batch-size", "5"]) == 0
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    retrieval = results["captions"]["metrics"]
    assert retrieval["num_items"] == 24 and retrieval["num_text"] == 48  # two captions per image
    assert retrieval["image_to_text"]["num_queries"] == 24 and retrieval["text_to_image"]["num_queries"] == 48
    assert set(results["shapes-geometry"]["metrics"]["image-text"]) == {
        "modality_gap", "linear_separability", "alignment", "matched_cosine"}
    shapes = results["shapes"]
    assert shapes["templates"] == list(demo_shapes.EVAL_TEMPLATES)  # the shard set's templates file
    assert shapes["prompts"][0] == ["a photo of a blue circle.", "a blue circle."]
    assert shapes["model"]["source"] == "tiny" and shapes["versions"]["open_clip"] == open_clip.__version__
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "## shapes (zeroshot_classification)" in summary and "| image_to_text/recall@1 |" in summary
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "captions-projection.png", "captions-similarity.png", "shapes-confusion_matrix.png",
        "shapes-geometry-projection.png", "shapes-geometry-similarity.png", "shapes-per_class_accuracy.png",
        "shapes-projection.png", "shapes-similarity.png"]
    capsys.readouterr()

    # The same tasks with other batching give the same numbers.
    again = tmp_path / "b.json"
    assert mmcl(["eval", "tiny", "--tasks", str(data / "tasks.yaml"), "--output", str(again),
                 "--batch-size", "64", "--num-workers", "2"]) == 0
    second = {r["name"]: r for r in json.loads(again.read_text())["results"]}
    for name, result in results.items():
        assert flatten(second[name]["metrics"]) == pytest.approx(flatten(result["metrics"]), abs=1e-9), name

    edited = json.loads(again.read_text())
    edited["results"][2]["metrics"]["top1"] += 0.25
    again.write_text(json.dumps(edited))
    capsys.readouterr()
    assert mmcl(["eval", "--compare", str(out), str(again)]) == 0
    printed = capsys.readouterr().out
    top1 = next(line for line in printed.splitlines() if line.startswith("shapes/top1 "))
    assert top1.split()[-1] == "+0.2500"
    assert next(line for line in printed.splitlines() if "captions/image_to_text/recall@1" in line).endswith("+0.0000")


def test_checkpoint_folders_through_the_classic_command(data, tmp_path, capsys):
    torch.manual_seed(0)
    model, _, _ = create_model("tiny")
    save_model(model, tmp_path / "run" / "checkpoints" / "step-00000010" / "model")  # the trainer's layout
    templates = demo_shapes.write_templates(tmp_path / "templates.txt")
    for checkpoint in (tmp_path / "run" / "checkpoints" / "step-00000010",
                       tmp_path / "run" / "checkpoints" / "step-00000010" / "model"):
        out = tmp_path / "result.json"
        assert mmcl(["eval", str(checkpoint), "--data", str(data / "classes"), "--templates", str(templates),
                     "--output", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["metrics"]["num_samples"] == 24 and result["classnames"] == sorted(demo_shapes.classnames())
        assert result["templates"] == list(demo_shapes.EVAL_TEMPLATES) and result["model"]["source"] == str(checkpoint)
        assert "zero-shot top-1" in capsys.readouterr().out
    direct = zero_shot_classification(checkpoint, data / "classes", list(demo_shapes.EVAL_TEMPLATES))
    assert direct["metrics"] == result["metrics"]


def test_three_modalities_retrieval_and_geometry(tmp_path, capsys):
    items = tmp_path / "items"
    items.mkdir()
    rng = random.Random(0)
    for i, name in enumerate(demo_shapes.classnames()[:8]):
        demo_shapes.draw(*name.split(), rng).save(items / f"{i:02d}.jpg")
        (items / f"{i:02d}.txt").write_text(f"a {name}")
        soundfile.write(items / f"{i:02d}.wav", np.sin(np.arange(8000) * (i + 1) / 20).astype("float32"), 16000)
    prepare_shards(items, tmp_path / "shards", shard_size=4, progress=False)
    out = tmp_path / "r.json"
    assert mmcl(["eval", "tiny-audio", "--data", str(tmp_path / "shards"), "--task", "multimodal_retrieval",
                 "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["num_items"] == 8 and metrics["chance_recall@1"] == 1 / 8
    directions = {k: m for k, m in metrics.items() if isinstance(m, dict)}
    assert sorted(directions) == sorted(
        f"{given}_to_{target}/{scoring}" for given, target in (("text+audio", "image"), ("image+audio", "text"),
                                                               ("image+text", "audio"))
        for scoring in ("sum", "multilinear"))
    assert all(m["num_queries"] == 8 and 1 <= m["mean_rank"] <= 8 for m in directions.values())

    assert mmcl(["eval", "tiny-audio", "--data", str(tmp_path / "shards"), "--task", "geometry", "--modalities",
                 "image", "text", "audio", "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert {"image-text", "image-audio", "text-audio"} <= set(metrics)
    assert all(0 < metrics[m]["effective_rank"] <= 8 for m in ("image", "text", "audio"))


TINY_OPEN_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                                  "head_width": 16},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_open_clip_model_by_name_agrees_with_open_clips_zero_shot_path(data, tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mmcl-test-tiny.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(tmp_path / "configs")
    torch.manual_seed(0)
    clip, _, preprocess = open_clip.create_model_and_transforms("mmcl-test-tiny")
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, tmp_path / "w.safetensors")
    out = tmp_path / "r.json"
    assert mmcl(["eval", "open_clip:mmcl-test-tiny", "--weights", str(tmp_path / "w.safetensors"),
                 "--data", str(data / "classes"), "--templates", str(demo_shapes.write_templates(tmp_path / "t.txt")),
                 "--output", str(out)]) == 0
    ours = json.loads(out.read_text())

    # open_clip's own path on the same weights: its prompt classifier, then a plain loop over the images.
    clip.eval()
    tokenizer = open_clip.get_tokenizer("mmcl-test-tiny")
    with torch.no_grad():
        templates = [lambda c, t=t: t.replace("{c}", c) for t in ours["templates"]]  # open_clip formats `{}`
        classifier = open_clip.build_zero_shot_classifier(clip, tokenizer, ours["classnames"], templates,
                                                          device="cpu")
        correct = 0
        for label, folder in enumerate(sorted(p for p in (data / "classes").iterdir())):
            for path in sorted(folder.iterdir()):
                image = preprocess(Image.open(path).convert("RGB"))[None]
                features = torch.nn.functional.normalize(clip.encode_image(image), dim=-1)
                correct += int((features @ classifier).argmax() == label)
    assert ours["metrics"]["top1"] == pytest.approx(correct / 24)

    torch.save(clip.state_dict(), tmp_path / "w.pt")
    capsys.readouterr()
    assert mmcl(["eval", "open_clip:mmcl-test-tiny", "--weights", str(tmp_path / "w.pt"), "--data",
                 str(data / "classes")]) == 2
    assert "give weights as .safetensors" in capsys.readouterr().err
