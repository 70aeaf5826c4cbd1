"""Linear probe and few-shot classification on frozen embeddings, as CLIP_benchmark's linear probe.

The classifier is a multinomial logistic regression `features @ W.T + b`, trained full-batch in float64 with
`torch.optim.LBFGS` (strong-Wolfe line search) from zero weights, minimising the mean cross-entropy plus
`weight_decay / 2 · ||W||²` (the bias is not penalised): scikit-learn's `LogisticRegression` with
`C = 1 / (N · weight_decay)` for N training items. Zero start, full batch and a fixed item order make a fit a
function of the features, labels and weight decay alone; the few-shot draw and the validation split are seeded.

The weight decay is the one of `weight_decays` with the best top-1 on a stratified validation split of the
training items (ties: the largest, i.e. the simplest model); the classifier is then refit on all training items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmcl.errors import UserError
from mmcl.eval.metrics import topk_accuracy
from mmcl.eval.tasks import LinearProbeTask


@dataclass
class Probe:
    """A fitted classifier [C, D] + [C] and how it was chosen."""

    weight: torch.Tensor
    bias: torch.Tensor
    weight_decay: float
    validation_top1: list[float] | None  # per weight decay tried; None when only one was given
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


def _per_class_shuffled(labels: torch.Tensor, num_classes: int, seed: int) -> list[torch.Tensor]:
    """Each class's item indices (ascending positions) in a seeded random order."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        members = (labels == c).nonzero().flatten()
        out.append(members[torch.randperm(members.numel(), generator=generator)])
    return out


def fewshot_indices(labels: torch.Tensor, num_classes: int, k: int | None, seed: int) -> tuple[torch.Tensor, int]:
    """Ascending indices of at most k seeded items per class (all with k None), and how many classes have fewer."""
    if k is None:
        return torch.arange(labels.numel()), 0
    chosen = [members[:k] for members in _per_class_shuffled(labels, num_classes, seed)]
    return torch.cat(chosen).sort().values, sum(members.numel() < k for members in chosen)


def validation_split(labels: torch.Tensor, num_classes: int, fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending (fit, validation) indices: floor(fraction · n) seeded items of each class of n held out, so that
    every class keeps at least one item to fit on."""
    kept, held = [], []
    for members in _per_class_shuffled(labels, num_classes, seed):
        cut = min(int(fraction * members.numel()), members.numel() - 1)
        held.append(members[:cut])
        kept.append(members[cut:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
        max_iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) minimising mean cross-entropy + weight_decay / 2 · ||W||², by full-batch L-BFGS."""
    x = features.double()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iterations, history_size=20,
                                  tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def objective():
        optimiser.zero_grad()
        loss = F.cross_entropy(logits(x, weight, bias), labels) + weight_decay / 2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # evaluation runs under no_grad
        optimiser.step(objective)
    return weight.detach(), bias.detach()


def choose_weight_decay(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        task: LinearProbeTask) -> tuple[float, list[float] | None, int]:
    """(chosen weight decay, validation top-1 per weight decay or None, validation items)."""
    if len(task.weight_decays) == 1:
        return task.weight_decays[0], None, 0
    fit_rows, held = validation_split(labels, num_classes, task.validation_fraction, task.seed)
    if held.numel() == 0:
        raise UserError(f"task {task.label}: the validation split ({task.validation_fraction:g} of each class, "
                        "rounded down) is empty; give more training items per class (fewshot_k) or a single "
                        "weight decay")
    top1 = []
    for weight_decay in task.weight_decays:
        weight, bias = fit(features[fit_rows], labels[fit_rows], num_classes, weight_decay, task.max_iterations)
        top1.append(topk_accuracy(logits(features[held], weight, bias), labels[held], 1))
    best = max(range(len(top1)), key=lambda i: (top1[i], task.weight_decays[i]))
    return task.weight_decays[best], top1, held.numel()


def train_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, task: LinearProbeTask) -> Probe:
    """Choose the weight decay on a validation split of the training items, then refit on all of them."""
    weight_decay, validation_top1, num_validation = choose_weight_decay(features, labels, num_classes, task)
    weight, bias = fit(features, labels, num_classes, weight_decay, task.max_iterations)
    return Probe(weight, bias, weight_decay, validation_top1, labels.numel(), num_validation)
