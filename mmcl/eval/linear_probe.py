"""Linear probe and few-shot classification on frozen embeddings, as CLIP_benchmark's linear probe.

The classifier is a multinomial logistic regression `features @ W.T + b`, trained full-batch in float64 with
`torch.optim.LBFGS` (strong-Wolfe line search) from zero weights, minimising the mean cross-entropy plus
`weight_decay / 2 · ||W||²` (the bias is not penalised): scikit-learn's `LogisticRegression` with
`C = 1 / (N · weight_decay)` for N training items. Zero start, full batch and a fixed item order make a fit a
function of the features, labels and weight decay alone; the few-shot draw and the validation split are seeded.

The weight decay is the one of `weight_decays` with the best top-1 on a stratified validation split of the
training items (ties: the largest, i.e. the simplest model); the classifier is then refit on all training items.

Multi-label data (labels given as [N, C] 0/1 targets) gets one-vs-rest logistic regression: the same linear map,
minimising the mean over items of the summed per-class binary cross-entropy plus the same penalty, which splits
into C independent problems, each scikit-learn's binary `LogisticRegression` with `C = 1 / (N · weight_decay)`.
Its validation split is a seeded `validation_fraction` of all items (classes overlap, so it cannot be stratified),
its weight decay the one with the best validation mAP, and its few-shot draw k positive items of each class,
pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmcl.errors import UserError
from mmcl.eval.average_precision import class_average_precision, mean_average_precision
from mmcl.eval.metrics import topk_accuracy
from mmcl.eval.tasks import LinearProbeTask


@dataclass
class Probe:
    """A fitted classifier [C, D] + [C] and how it was chosen."""

    weight: torch.Tensor
    bias: torch.Tensor
    weight_decay: float
    validation: list[float] | None  # top-1 (multi-label: mAP) per weight decay tried; None when only one was given
    num_train: int  # items the final fit saw
    num_validation: int

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return logits(features, self.weight, self.bias)


def logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """[N, C] class scores in float64."""
    return features.double() @ weight.T + bias


def shared_classnames(train_source, test_source) -> list[str]:
    """The class names both sources carry; a UserError naming both when either lacks them or they differ."""
    for source in (train_source, test_source):
        if not source.classnames:
            raise UserError(f"{source.path}: no class names (add classnames.txt or set the data's classnames)")
    if train_source.classnames != test_source.classnames:
        differ = next((i for i, (a, b) in enumerate(zip(train_source.classnames, test_source.classnames)) if a != b),
                      min(len(train_source.classnames), len(test_source.classnames)))
        raise UserError(f"linear probe: the class names of train_data {train_source.path} "
                        f"({len(train_source.classnames)} classes) and data {test_source.path} "
                        f"({len(test_source.classnames)}) differ, first at class {differ}: "
                        f"{_name_at(train_source.classnames, differ)} vs {_name_at(test_source.classnames, differ)}")
    return train_source.classnames


def _name_at(names: list[str], index: int) -> str:
    return repr(names[index]) if index < len(names) else "(none)"


def check_labels(labels: torch.Tensor, num_classes: int, path, every_class: bool) -> None:
    """Labels must index the class names; training data must also hold every class, or its row is never fitted
    (checked on all training items: a few-shot draw keeps at least one of each class)."""
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.numel():
        raise UserError(f"{path}: holds label {int(outside[0])} but there are {num_classes} class names "
                        f"(labels must be 0..{num_classes - 1})")
    absent = sorted(set(range(num_classes)) - set(labels.tolist()))
    if every_class and absent:
        raise UserError(f"{path}: no training items of class(es) {absent[:5]}; every class needs at least one")


def check_targets(targets: torch.Tensor, path) -> None:
    """Multi-label training data needs a positive and a negative item of every class, or that class's fit has no
    finite optimum (its bias runs off to ±infinity)."""
    positives = targets.sum(dim=0)
    one_sided = ((positives == 0) | (positives == targets.shape[0])).nonzero().flatten().tolist()
    if one_sided:
        raise UserError(f"{path}: class(es) {one_sided[:5]} have no positive or no negative training item (after "
                        "any few-shot draw); every class needs at least one of each")


def _per_class_shuffled(labels: torch.Tensor, num_classes: int, seed: int) -> list[torch.Tensor]:
    """Each class's item indices (ascending positions; multi-label: its positive items) in a seeded random
    order."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        members = (labels[:, c] if labels.ndim == 2 else labels == c).nonzero().flatten()
        out.append(members[torch.randperm(members.numel(), generator=generator)])
    return out


def fewshot_indices(labels: torch.Tensor, num_classes: int, k: int | None, seed: int) -> tuple[torch.Tensor, int]:
    """Ascending indices of at most k seeded items per class (all with k None), and how many classes have fewer.
    Multi-label: k seeded positive items of each class, pooled (an item drawn for two classes is taken once)."""
    if k is None:
        return torch.arange(labels.shape[0]), 0
    chosen = [members[:k] for members in _per_class_shuffled(labels, num_classes, seed)]
    return torch.cat(chosen).unique(), sum(members.numel() < k for members in chosen)


def validation_split(labels: torch.Tensor, num_classes: int, fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending (fit, validation) indices: floor(fraction · n) seeded items of each class of n held out, so that
    every class keeps at least one item to fit on. Multi-label: floor(fraction · N) seeded items of all N."""
    if labels.ndim == 2:
        shuffled = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(seed))
        cut = int(fraction * labels.shape[0])
        return shuffled[cut:].sort().values, shuffled[:cut].sort().values
    kept, held = [], []
    for members in _per_class_shuffled(labels, num_classes, seed):
        cut = min(int(fraction * members.numel()), members.numel() - 1)
        held.append(members[:cut])
        kept.append(members[cut:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
        max_iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) minimising mean cross-entropy (multi-label targets [N, C]: the mean over items of the
    summed binary cross-entropy) + weight_decay / 2 · ||W||², by full-batch L-BFGS."""
    x = features.double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iterations, history_size=20,
                                  tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def objective():
        optimiser.zero_grad()
        scores = logits(x, weight, bias)
        error = (F.binary_cross_entropy_with_logits(scores, labels.double(), reduction="sum") / x.shape[0]
                 if labels.ndim == 2 else F.cross_entropy(scores, labels))
        loss = error + weight_decay / 2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # evaluation runs under no_grad
        optimiser.step(objective)
    return weight.detach(), bias.detach()


def choose_weight_decay(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        task: LinearProbeTask) -> tuple[float, list[float] | None, int]:
    """(chosen weight decay, validation top-1 (multi-label: mAP) per weight decay or None, validation items)."""
    if len(task.weight_decays) == 1:
        return task.weight_decays[0], None, 0
    fit_rows, held = validation_split(labels, num_classes, task.validation_fraction, task.seed)
    if held.numel() == 0:
        raise UserError(f"task {task.label}: the validation split ({task.validation_fraction:g} of each class, "
                        "rounded down) is empty; give more training items per class (fewshot_k) or a single "
                        "weight decay")
    if labels.ndim == 2 and not labels[held].any():
        raise UserError(f"task {task.label}: no class has a positive item in the validation split "
                        f"({task.validation_fraction:g} of the training items); give more training items or a "
                        "single weight decay")
    measured = []
    for weight_decay in task.weight_decays:
        weight, bias = fit(features[fit_rows], labels[fit_rows], num_classes, weight_decay, task.max_iterations)
        measured.append(_validation_score(logits(features[held], weight, bias), labels[held]))
    best = max(range(len(measured)), key=lambda i: (measured[i], task.weight_decays[i]))
    return task.weight_decays[best], measured, held.numel()


def _validation_score(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1, or for multi-label targets the mAP over the classes with a validation positive."""
    if labels.ndim == 2:
        return mean_average_precision(class_average_precision(scores, labels)).item()
    return topk_accuracy(scores, labels, 1)


def train_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, task: LinearProbeTask) -> Probe:
    """Choose the weight decay on a validation split of the training items, then refit on all of them."""
    weight_decay, validation, num_validation = choose_weight_decay(features, labels, num_classes, task)
    weight, bias = fit(features, labels, num_classes, weight_decay, task.max_iterations)
    return Probe(weight, bias, weight_decay, validation, labels.shape[0], num_validation)
