"""Linear probe and few-shot evaluation (`linear_probe` tasks): the fit against scikit-learn's LogisticRegression, the
seeded few-shot draw and validation split, the deterministic weight-decay choice, invariance to loader batching,
workers and processes, class-name and config errors, and the task through `mmcl eval --tasks` with its summary and plots."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from data_tools import demo_shapes
from mmcl.config import ConfigError, validate
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.linear_probe import choose_weight_decay, fewshot_indices, fit, validation_split
from mmcl.eval.tasks import BootstrapConfig, LinearProbeTask
from mmcl.models import create_model
from pipelines.cli import main as mmcl
from tests.test_eval_audio import one_thread, tone_model, write_tones  # noqa: F401 (one_thread: autouse)

GRID = [1e-4, 1e-2, 1.0]  # the default grid's smallest decays take the most L-BFGS iterations; tests keep to these


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 shape classes: 264 training images (two loader parts of 256 and 8 items) and 48 test images."""
    root = tmp_path_factory.mktemp("linear_probe")
    demo_shapes.write_class_folders(root / "train", per_class=22, seed=0)
    demo_shapes.write_class_folders(root / "test", per_class=4, seed=1)
    return root


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net, transforms, tokenizer = create_model("tiny")
    return net.eval(), transforms.eval, tokenizer


def probe_task(train, test, **fields) -> LinearProbeTask:
    (task,) = validate(EvalConfig, {"tasks": [{"type": "linear_probe", "train_data": {"path": str(train)},
                                               "data": {"path": str(test)}, **fields}]}, "test").tasks
    return task


def clusters(per_class: int, num_classes: int = 4, dim: int = 12, seed: int = 0):
    """Gaussian clusters around well-separated random centres: features [N, D] float64 and labels [N]."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + torch.randn(labels.numel(), dim, generator=generator, dtype=torch.float64), labels


def objective(weight, bias, features, labels, weight_decay) -> float:
    """What `fit` minimises, written out: mean cross-entropy + weight_decay / 2 · ||W||²."""
    return (torch.nn.functional.cross_entropy(features @ weight.T + bias, labels)
            + weight_decay / 2 * weight.square().sum()).item()


@pytest.mark.parametrize("weight_decay", [1e-3, 1e-1])
def test_fit_equals_scikit_learns_logistic_regression_with_c_one_over_n_weight_decay(weight_decay):
    features, labels = clusters(per_class=40)
    weight, bias = fit(features, labels, 4, weight_decay, max_iterations=1000)
    reference = LogisticRegression(C=1 / (labels.numel() * weight_decay), tol=1e-12, max_iter=10_000)
    reference.fit(features.numpy(), labels.numpy())
    # Both solvers stop where the objective is flat along a few directions (separable data, small weight decay):
    # sklearn's at a gradient of ~2e-9 (scipy's ftol), this fit at ~8e-10. The objectives agree to 1e-11, which
    # leaves parameters up to 3e-4 and probabilities up to 3e-5 apart; tolerances are three times those.
    assert objective(weight, bias, features, labels, weight_decay) <= objective(
        torch.from_numpy(reference.coef_), torch.from_numpy(reference.intercept_), features, labels,
        weight_decay) + 1e-11
    # The L2 optimum is unique in W (its class rows sum to zero); the unpenalised bias only up to a shift.
    assert weight.numpy() == pytest.approx(reference.coef_, abs=1e-3)
    assert (bias - bias.mean()).numpy() == pytest.approx(reference.intercept_ - reference.intercept_.mean(), abs=1e-3)
    test_features, _ = clusters(per_class=25, seed=1)
    scores = test_features @ weight.T + bias
    assert torch.softmax(scores, dim=1).numpy() == pytest.approx(reference.predict_proba(test_features.numpy()),
                                                                  abs=1e-4)
    assert np.array_equal(scores.argmax(dim=1).numpy(), reference.predict(test_features.numpy()))


def test_fewshot_draws_k_items_per_class_by_seed_and_counts_short_classes():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 10 + [0] * 4)  # class 0 also after class 2: order by position
    picked, short = fewshot_indices(labels, 3, k=5, seed=0)
    assert torch.bincount(labels[picked]).tolist() == [5, 3, 5] and short == 1
    assert torch.equal(picked, picked.sort().values)
    assert torch.equal(fewshot_indices(labels, 3, k=5, seed=0)[0], picked)
    assert not torch.equal(fewshot_indices(labels, 3, k=5, seed=1)[0], picked)
    assert torch.equal(fewshot_indices(labels, 3, k=None, seed=0)[0], torch.arange(labels.numel()))


def test_validation_split_is_stratified_and_the_weight_decay_choice_deterministic():
    features, labels = clusters(per_class=15, seed=2)
    features += 2.5 * torch.randn(features.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fit_rows, held = validation_split(labels, 4, 0.2, seed=0)
    assert torch.bincount(labels[held]).tolist() == [3, 3, 3, 3]  # floor(0.2 · 15) of each class
    assert sorted(fit_rows.tolist() + held.tolist()) == list(range(60))
    assert not torch.equal(validation_split(labels, 4, 0.2, seed=1)[1], held)
    task = LinearProbeTask(type="linear_probe", data={"path": "."}, train_data={"path": "."},
                           weight_decays=[1e-4, 1e-2, 1.0, 10.0], max_iterations=100)
    chosen, top1, num_validation = choose_weight_decay(features, labels, 4, task)
    assert (chosen, top1, num_validation) == choose_weight_decay(features, labels, 4, task)
    assert num_validation == 12 and len(top1) == 4
    best = max(top1)
    assert top1[task.weight_decays.index(chosen)] == best
    assert chosen == max(w for w, t in zip(task.weight_decays, top1) if t == best)  # ties: the largest
    single = task.model_copy(update={"weight_decays": [0.5]})
    assert choose_weight_decay(features, labels, 4, single) == (0.5, None, 0)


def test_results_do_not_depend_on_batch_size_or_workers_and_the_probe_learns(data, model):
    task = probe_task(data / "train", data / "test", weight_decays=GRID)
    bootstrap = BootstrapConfig(samples=200)
    runs = [evaluate_task(*model, task, batch_size=batch_size, num_workers=workers, bootstrap=bootstrap).result
            for batch_size, workers in [(32, 0), (96, 2)]]
    for key in ("metrics", "intervals", "probe"):
        assert runs[1][key] == runs[0][key], key
    m = runs[0]["metrics"]
    assert (m["num_train"], m["num_validation"], m["num_test"], m["num_classes"]) == (264, 48, 48, 12)
    assert m["fewshot_k"] is None and m["weight_decay"] in task.weight_decays and m["top5"] is not None
    assert sorted(runs[0]["intervals"]) == ["mean_per_class_recall", "top1", "top5"]
    # A random tiny model's features still separate the shapes: top-1 0.35-0.54 over model seeds 0-4, where always
    # answering the majority class scores 1/12.
    assert m["top1"] > 3 * m["majority_top1"]


def test_fewshot_task_trains_on_k_per_class(data, model):
    task = probe_task(data / "train", data / "test", fewshot_k=5, seed=3, weight_decays=GRID)
    m = evaluate_task(*model, task).result["metrics"]
    assert (m["num_train"], m["num_validation"], m["fewshot_k"], m["fewshot_short_classes"]) == (60, 12, 5, 0)
    one_shot = probe_task(data / "train", data / "test", fewshot_k=1, weight_decays=GRID)
    with pytest.raises(UserError, match="validation split .* is empty"):
        evaluate_task(*model, one_shot)
    m = evaluate_task(*model, one_shot.model_copy(update={"weight_decays": [1e-3]})).result["metrics"]
    assert (m["num_train"], m["num_validation"]) == (12, 0)


def test_class_names_of_train_and_test_must_agree(data, model, tmp_path):
    other = shutil.copytree(data / "test", tmp_path / "test")
    (other / "red_circle").rename(other / "crimson_circle")
    with pytest.raises(UserError, match=r"train_data .*train \(12 classes\) and data .*test \(12\) differ, "
                                        r"first at class 3: 'green circle' vs 'crimson circle'"):
        evaluate_task(*model, probe_task(data / "train", other))


def test_training_data_must_hold_every_class(data, model, tmp_path):
    train = shutil.copytree(data / "train", tmp_path / "train")
    for image in (train / "blue_square").iterdir():
        image.unlink()
    with pytest.raises(UserError, match=r"no training items of class\(es\) \[1\]"):
        evaluate_task(*model, probe_task(train, data / "test", weight_decays=GRID))


def test_audio_probe_separates_tones(tmp_path):
    # The tone model embeds each tone as its class's one-hot direction: a linear probe must get every item right.
    task = probe_task(write_tones(tmp_path / "train", per_class=6), write_tones(tmp_path / "test"), modality="audio",
                      weight_decays=GRID)
    result = evaluate_task(*tone_model(), task).result
    assert result["modality"] == "audio" and result["name"] == "linear_probe/audio"
    m = result["metrics"]
    assert (m["top1"], m["top5"], m["num_train"], m["num_validation"], m["num_test"]) == (1.0, None, 18, 3, 12)


@pytest.mark.parametrize("bad", [{"fewshot_k": 0}, {"validation_fraction": 1.0}, {"validation_fraction": 0},
                                 {"weight_decays": []}, {"weight_decays": [0.0, 1e-3]}, {"weight_decays": [1e-3, 1e-3]},
                                 {"modality": "text"}, {"seed": -1}, {"max_iterations": 0}, {"train_data": None},
                                 {"fewshot": 5}])
def test_bad_config_values_are_refused(bad):
    with pytest.raises(ConfigError):
        probe_task("train", "test", **bad)


def test_task_file_through_mmcl_eval_writes_summary_and_plots(data, tmp_path, capsys):
    (tmp_path / "tasks.yaml").write_text(f"""tasks:
  - {{type: linear_probe, name: probe, train_data: {{path: {data / 'train'}}}, data: {{path: {data / 'test'}}},
     fewshot_k: 10, weight_decays: [0.0001, 0.01]}}
""")
    out = tmp_path / "result.json"
    assert mmcl(["eval", "tiny", "--tasks", str(tmp_path / "tasks.yaml"), "--output", str(out),
                 "--report-dir", str(tmp_path / "report"), "--bootstrap", "100"]) == 0
    assert "probe: linear-probe top-1: " in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["task"] == "linear_probe" and result["metrics"]["num_train"] == 120
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "## probe (linear_probe)" in summary and "| weight_decay |" in summary and "Uniform chance" in summary
    low, high = result["intervals"]["top1"]
    assert f"| top1 | {result['metrics']['top1']:.4f} [{low:.4f}, {high:.4f}] |" in summary
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "probe-confusion_matrix.png", "probe-per_class_accuracy.png"]
    assert mmcl(["eval", "--compare", str(out), str(out)]) == 0
    assert re.search(r"^probe/weight_decay +0\.0\d+ +0\.0\d+ +\+0", capsys.readouterr().out, re.MULTILINE)


def _probe_in_process(rank: int, train: str, test: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        net, transforms, tokenizer = create_model("tiny")
        result = evaluate_task(net.eval(), transforms.eval, tokenizer, probe_task(train, test, weight_decays=GRID),
                               batch_size=32, num_workers=0, rank=rank, world_size=2,
                               bootstrap=BootstrapConfig(samples=200)).result
        if rank == 0:
            with open(out, "w") as f:
                json.dump({k: result[k] for k in ("metrics", "intervals", "probe")}, f)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_give_the_one_process_probe(data, model, tmp_path):
    from tests.forked import run_forked

    run_forked(_probe_in_process, (str(data / "train"), str(data / "test"), str(tmp_path / "shared.json")))
    alone = evaluate_task(*model, probe_task(data / "train", data / "test", weight_decays=GRID), batch_size=32,
                          num_workers=0, bootstrap=BootstrapConfig(samples=200)).result
    shared = json.loads((tmp_path / "shared.json").read_text())
    assert shared == json.loads(json.dumps({k: alone[k] for k in ("metrics", "intervals", "probe")}))
