"""Non-finite embeddings are refused, never scored: NaN compares False, so it would otherwise rank first."""

from __future__ import annotations

import json

import pytest
import torch

from data_tools import demo_shapes
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task, run_tasks
from mmcl.eval import geometry
from mmcl.data.audio import load as load_audio
from mmcl.eval.retrieval import multimodal_retrieval, paired_retrieval, ranks
from mmcl.eval.zeroshot import classification_metrics
from mmcl.models import create_model, save_model
from pipelines.cli import main as mmcl
from tests.test_eval_audio import audio_task, one_thread, tone_model, write_tones  # noqa: F401 (a fixture)

BAD = {"nan": float("nan"), "inf": float("inf")}


def spoiled(x: torch.Tensor, rows, value: float) -> torch.Tensor:
    x = x.clone()
    x[rows] = value
    return x


@pytest.fixture(params=[("all rows", slice(None)), ("one row", 1)], ids=lambda p: p[0])
def rows(request):
    return request.param[1]


@pytest.fixture(params=list(BAD.values()), ids=list(BAD))
def value(request):
    return request.param


def test_retrieval_refuses_non_finite_embeddings(rows, value):
    good = torch.eye(4)
    with pytest.raises(ValueError, match="image embeddings hold non-finite values"):
        paired_retrieval(spoiled(good, rows, value), good, torch.arange(4), ("image", "text"))
    with pytest.raises(ValueError, match="text embeddings hold non-finite values"):
        paired_retrieval(good, spoiled(good, rows, value), torch.arange(4), ("image", "text"))
    with pytest.raises(ValueError, match="candidates hold non-finite values"):
        ranks(good, spoiled(good, rows, value), torch.arange(4)[:, None])
    with pytest.raises(ValueError, match="audio embeddings hold non-finite values"):
        multimodal_retrieval({"image": good, "text": good, "audio": spoiled(good, rows, value)})


def test_classification_refuses_non_finite_embeddings(rows, value):
    good, labels = torch.eye(4), torch.arange(4)
    with pytest.raises(ValueError, match="query embeddings hold non-finite values"):
        classification_metrics(spoiled(good, rows, value), good, labels)
    with pytest.raises(ValueError, match="class embeddings hold non-finite values"):
        classification_metrics(good, spoiled(good, rows, value), labels)


def test_geometry_refuses_non_finite_embeddings(rows, value):
    good = torch.nn.functional.normalize(torch.arange(1.0, 25.0).reshape(6, 4).sin(), dim=1)
    bad = spoiled(good, rows, value)
    with pytest.raises(ValueError, match="y embeddings hold non-finite values"):
        geometry.pair_geometry(good, bad, max_probe_samples=6)
    with pytest.raises(ValueError, match="embeddings hold non-finite values"):
        geometry.modality_geometry(bad)
    # The two measures that turn NaN or inf into a plausible number refuse on their own too.
    with pytest.raises(ValueError, match="embeddings hold non-finite values"):
        geometry.effective_rank(bad)
    with pytest.raises(ValueError, match="x embeddings hold non-finite values"):
        geometry.linear_separability(bad, good)


def test_the_error_names_the_first_bad_row():
    x = spoiled(torch.eye(5), [2, 4], float("nan"))
    with pytest.raises(ValueError, match="image embeddings hold non-finite values \\(NaN/inf\\) in 2 row\\(s\\), "
                                         "first row 2"):
        paired_retrieval(x, torch.eye(5), torch.arange(5), ("image", "text"))


def nan_for(model, modality: str, poison: torch.Tensor) -> None:
    """Make the model's `modality` tower return NaN for exactly the input rows equal to `poison`."""
    encode = model.encode

    def patched(m, inputs):
        out = encode(m, inputs)
        if m == modality:
            out[(inputs == poison).flatten(1).all(dim=1)] = float("nan")
        return out

    model.encode = patched


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tones(tmp_path_factory.mktemp("nonfinite_tones") / "folders", per_class=2)


def test_one_nan_audio_embedding_names_its_clip(tones):
    model, transforms, tokenizer = tone_model()
    nan_for(model, "audio", load_audio((tones / "low" / "low_1.wav").read_bytes(), transforms["audio"]))
    with pytest.raises(UserError, match="audio embeddings of 1 item\\(s\\) are not finite \\(NaN/inf\\), "
                                        "first: 'low/low_1': the model has diverged"):
        run_tasks(model, transforms, tokenizer, [audio_task(tones, name="tones")])


def test_one_nan_caption_names_the_item_that_owns_it(tones, tmp_path):
    rows = [{"audio": str(tones / name / f"{name}_0.wav"), "text": [f"a {name} tone", f"the {name} sound"]}
            for name in ("high", "low", "middle")]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, transforms, tokenizer = tone_model()
    nan_for(model, "text", tokenizer(["the low sound"])[0])  # the second caption of the second item
    task = EvalConfig.model_validate({"tasks": [{"type": "retrieval", "modalities": ["audio", "text"],
                                                 "data": {"path": str(tmp_path / "pairs.jsonl")}}]}).tasks[0]
    with pytest.raises(UserError, match="text embeddings of 1 item\\(s\\) are not finite \\(NaN/inf\\), "
                                        "first: 'pairs.jsonl:2'"):
        evaluate_task(model, transforms, tokenizer, task)


def test_one_nan_class_prompt_names_its_class(tones):
    model, transforms, tokenizer = tone_model()
    nan_for(model, "text", tokenizer(["This is a sound of middle."])[0])
    with pytest.raises(UserError, match="text embeddings of the class prompts of 1 class\\(es\\) are not finite "
                                        "\\(NaN/inf\\), first: 'middle'"):
        evaluate_task(model, transforms, tokenizer, audio_task(tones))


def test_corrupt_weights_through_the_cli(tmp_path, capsys):
    classes = demo_shapes.write_class_folders(tmp_path / "classes", per_class=1, seed=0)
    torch.manual_seed(0)
    model, _, _ = create_model("tiny")
    with torch.no_grad():
        next(model.towers["image"].parameters()).fill_(float("nan"))
    save_model(model, tmp_path / "model")
    capsys.readouterr()
    assert mmcl(["eval", str(tmp_path / "model"), "--data", str(classes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    first = sorted(p.name for p in classes.iterdir())[0]
    assert f"image embeddings of {len(demo_shapes.classnames())} item(s) are not finite (NaN/inf), first: '{first}/" in err
