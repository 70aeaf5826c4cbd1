"""Run evaluation tasks on a model object: the entry point for `mmcl eval` and for periodic evaluation in training."""

from __future__ import annotations

import platform
import random
import zlib
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import torch

import mmcl
from mmcl.data.image import ImageLimits
from mmcl.data.triggers import TriggerSpec, apply_image_trigger
from mmcl.errors import UserError
from mmcl.eval import geometry, label_lists, linear_probe, retrieval
from mmcl.eval.average_precision import scored_multilabel
from mmcl.eval.bootstrap import ItemHits, ItemScores, intervals, settings
from mmcl.eval.cache import DecodedCache
from mmcl.eval.datasets import open_spec
from mmcl.eval.embed import Embedded, Loading, check_modalities, embed_source
from mmcl.eval.models import describe_model, load_eval_model
from mmcl.eval.report import write_json
from mmcl.eval.summary import markdown
from mmcl.eval.tasks import (BackdoorTask, BootstrapConfig, EvalConfig, EvalTask, GeometryTask, LinearProbeTask,
                             MultimodalRetrievalTask, RetrievalTask, ZeroShotClassificationTask)
from mmcl.eval.templates import class_prompt_lists, read_class_prompts, resolve_templates
from mmcl.eval.zeroshot import class_embeddings, class_scores, classification_hits, scored_classification

SAMPLE_ROWS = 32  # items (or classes) shown in a similarity-matrix plot
PROJECTION_POINTS = 1000  # embeddings per modality kept for the 2-D projection plot


@dataclass
class Similarity:
    """A small score matrix for a heatmap: `rows` and `columns` say what the axes hold (e.g. "image", "class
    prompts"), `row_names`/`column_names` name each entry (item keys, class names), `sample` how they were picked."""

    matrix: torch.Tensor
    rows: str
    columns: str
    row_names: list[str]
    column_names: list[str]
    sample: str


@dataclass
class TaskOutput:
    """A task's JSON-ready result, plus small embedding samples for plots."""

    result: dict
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # per modality, ≤ PROJECTION_POINTS rows
    classes: dict[str, torch.Tensor] = field(default_factory=dict)  # class of each row of `embeddings`, if labelled
    classnames: list[str] | None = None  # the names of those classes
    similarity: Similarity | None = None
    item_hits: list[ItemHits | ItemScores] = field(default_factory=list)  # what bootstrap intervals resample


def versions() -> dict:
    import open_clip

    return {"mmcl": mmcl.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


def input_policy(transforms, modalities) -> dict:
    """How media were cut to the tower's input, so a number can be reproduced (e.g. the audio crop)."""
    out = {}
    audio = transforms.get("audio")
    if "audio" in modalities and audio is not None and hasattr(audio, "cfg"):
        out["audio"] = {**audio.cfg.model_dump(mode="json"),
                        "crop": "the first clip_seconds of each clip; shorter clips repeated end to end, then "
                                "zero-padded"}
    if "image" in modalities and "image" in transforms:
        out["image"] = repr(transforms["image"])
    return out


def spread(count: int, limit: int = PROJECTION_POINTS) -> torch.Tensor:
    """At most `limit` indices evenly spread over `count` items, so a sample of class-sorted data (class folders)
    shows every class rather than the first few."""
    return torch.arange(0, count, -(-count // limit))


def _check_labels(task: ZeroShotClassificationTask, source, labels: torch.Tensor) -> None:
    names_from = source.classnames_file or source.path
    count = len(source.classnames)
    out_of_range = labels[(labels < 0) | (labels >= count)]
    if out_of_range.numel():
        raise UserError(f"{names_from}: lists {count} class names but the data holds label "
                        f"{int(out_of_range[0])} (labels must be 0..{count - 1})")
    _check_used(task, source, labels.unique().numel())


def _check_used(task: ZeroShotClassificationTask, source, used: int) -> None:
    count = len(source.classnames)
    if used < count and not task.allow_missing_classes:
        raise UserError(f"{source.classnames_file or source.path}: lists {count} class names but the data's labels "
                        f"use only {used}; fix the class names, or set allow_missing_classes to score against all "
                        f"{count} anyway")


def _item_classes(labels: torch.Tensor, targets: torch.Tensor | None) -> list[list[int]]:
    """Each item's classes: its label, or its positives in multi-label targets."""
    if targets is None:
        return [[label] for label in labels.tolist()]
    return [row.nonzero().flatten().tolist() for row in targets]


def zeroshot_classification(model, transforms, tokenizer, task: ZeroShotClassificationTask,
                            loading: Loading) -> TaskOutput:
    check_modalities(model, [task.modality, "text"], f"zero-shot {task.modality} classification")
    source = open_spec(task.data)
    if not source.classnames:
        raise UserError(f"{source.path}: no class names (add classnames.txt or set the task's data.classnames)")
    where = f"task {task.label}"
    templates, templates_source = resolve_templates(task.templates, task.modality, source, where,
                                                    class_specific=task.class_prompts is not None)
    specific = {} if task.class_prompts is None else read_class_prompts(task.class_prompts, source.classnames, where)
    per_class = class_prompt_lists(source.classnames, templates, specific, where)
    data = embed_source(model, source, [task.modality], transforms, tokenizer, loading, need_labels=True)
    targets = None
    if label_lists.is_multilabel(data, task.multilabel, where):
        targets = label_lists.targets(data, len(source.classnames), source.classnames_file or source.path)
        _check_used(task, source, int(targets.any(dim=0).sum()))
    else:
        _check_labels(task, source, data.labels)
    classes = class_embeddings(model, tokenizer, source.classnames, per_class, loading.device)
    queries = data.features[task.modality]
    scores = class_scores(queries, classes)
    result = {
        "metrics": (scored_classification(scores, data.labels) if targets is None
                    else scored_multilabel(scores, targets)),
        "dataset": _describe(source, data),
        "modality": task.modality,
        "classnames": source.classnames,
        "templates": templates,
        "templates_source": templates_source,
        **({"class_prompts_source": task.class_prompts if isinstance(task.class_prompts, str) else
            "the task's class prompts"} if task.class_prompts is not None else {}),
        "prompts": per_class,
        "inputs": input_policy(transforms, [task.modality]),
    }
    sample = spread(len(data))
    prompt_rows = spread(len(source.classnames))
    similarity = _class_similarity(data, queries, classes, source.classnames, task.modality,
                                   _item_classes(data.labels, targets))
    embeddings = {task.modality: queries[sample], "text (class prompts)": classes[prompt_rows]}
    if targets is not None:  # items of several classes have no one colour in the projection plot
        return TaskOutput(result, embeddings, similarity=similarity, item_hits=[ItemScores(scores, targets)])
    return TaskOutput(result, embeddings, {task.modality: data.labels[sample], "text (class prompts)": prompt_rows},
                      source.classnames, similarity, [classification_hits(scores, data.labels)])


def _class_similarity(data: Embedded, queries: torch.Tensor, classes: torch.Tensor, classnames: list[str],
                      modality: str, item_classes: list[list[int]]) -> Similarity:
    """The first item of each class against the class prompts, for the first SAMPLE_ROWS classes that have items:
    square, with the right answers on the diagonal."""
    first: dict[int, int] = {}
    for index, labels in enumerate(item_classes):
        for label in labels:
            first.setdefault(label, index)
    shown = sorted(first)[:SAMPLE_ROWS]
    items = [first[c] for c in shown]
    return Similarity(queries[items] @ classes[shown].T, modality, "class prompts", [data.keys[i] for i in items],
                      [classnames[c] for c in shown], f"the first {modality} of each of {len(shown)} classes")


def _describe(source, data: Embedded) -> dict:
    return {**source.describe(), "num_items": len(data), "skipped": data.skipped}


def _first_captions(data: Embedded) -> torch.Tensor:
    """Each item's first caption embedding (captions are stored grouped by item, in order)."""
    first = torch.ones_like(data.text_owner, dtype=torch.bool)
    first[1:] = data.text_owner[1:] != data.text_owner[:-1]
    return data.features["text"][first]


def _paired(data: Embedded, modality: str) -> torch.Tensor:
    return _first_captions(data) if modality == "text" else data.features[modality]


def _sample_similarity(data: Embedded, a: str, b: str) -> Similarity:
    rows = slice(0, SAMPLE_ROWS)
    keys = data.keys[rows]
    return Similarity(_paired(data, a)[rows] @ _paired(data, b)[rows].T, a, b, keys, keys,
                      f"the first {len(keys)} items")


def _samples(data: Embedded, source, embeddings: dict[str, torch.Tensor]) -> dict:
    """TaskOutput's plot samples of items' paired embeddings: spread rows, with their classes when every item
    has a label and the source names the classes."""
    rows = spread(len(data))
    labelled = source.classnames is not None and bool((data.labels >= 0).all())
    return {"embeddings": {m: e[rows] for m, e in embeddings.items()},
            "classes": {m: data.labels[rows] for m in embeddings} if labelled else {},
            "classnames": source.classnames if labelled else None}


def _retrieval_chance(metrics: dict, num_items: int) -> dict:
    """recall@1 of a random ranking: 1/items in every direction (an item with c of the M captions finds one first
    with chance c/M, which averages to 1/items over the items)."""
    return {**metrics, "num_items": num_items, "chance_recall@1": 1.0 / num_items}


def retrieval_task(model, transforms, tokenizer, task: RetrievalTask, loading: Loading) -> TaskOutput:
    a, b = task.modalities
    if a == "text":
        a, b = b, a  # the multi-caption side is always the candidate side of `paired_retrieval`
    check_modalities(model, [a, b], f"{a}-{b} retrieval")
    source = open_spec(task.data)
    data = embed_source(model, source, [a, b], transforms, tokenizer, loading)
    owner = data.text_owner if b == "text" else torch.arange(len(data))
    directions = retrieval.paired_ranks(data.features[a], data.features[b], owner, (a, b))
    precision = retrieval.paired_average_precision(data.features[a], data.features[b], owner, (a, b))
    metrics = _retrieval_chance({d: {**retrieval.rank_summary(r, task.ks), retrieval.MAP: precision[d].mean().item()}
                                 for d, r in directions.items()}, len(data))
    metrics[f"num_{b}"] = int(data.features[b].shape[0])
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": [a, b],
              "inputs": input_policy(transforms, [a, b])}
    return TaskOutput(result, **_samples(data, source, {m: _paired(data, m) for m in (a, b)}),
                      similarity=_sample_similarity(data, a, b),
                      item_hits=retrieval.recall_hits(directions, task.ks, precision))


def multimodal_retrieval_task(model, transforms, tokenizer, task: MultimodalRetrievalTask,
                              loading: Loading) -> TaskOutput:
    modalities = list(task.modalities)
    check_modalities(model, modalities, "three-modality retrieval")
    source = open_spec(task.data)
    data = embed_source(model, source, modalities, transforms, tokenizer, loading)
    embeddings = {m: _paired(data, m) for m in modalities}
    directions = retrieval.multimodal_ranks(embeddings, task.scorings)
    precision = {d: retrieval.single_positive_precision(r) for d, r in directions.items()}
    metrics = _retrieval_chance({d: {**retrieval.rank_summary(r, task.ks), retrieval.MAP: precision[d].mean().item()}
                                 for d, r in directions.items()}, len(data))
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": modalities,
              "inputs": input_policy(transforms, modalities), "text_policy": "each item's first caption"}
    return TaskOutput(result, **_samples(data, source, embeddings),
                      similarity=_sample_similarity(data, modalities[0], modalities[1]),
                      item_hits=retrieval.recall_hits(directions, task.ks, precision))


def geometry_task(model, transforms, tokenizer, task: GeometryTask, loading: Loading) -> TaskOutput:
    check_modalities(model, task.modalities, "embedding geometry")
    source = open_spec(task.data)
    data = embed_source(model, source, task.modalities, transforms, tokenizer, loading)
    embeddings = {m: _paired(data, m) for m in task.modalities}
    metrics = {m: geometry.modality_geometry(e) for m, e in embeddings.items()}
    for a, b in combinations(task.modalities, 2):
        metrics[f"{a}-{b}"] = geometry.pair_geometry(embeddings[a], embeddings[b], task.max_probe_samples)
    metrics["num_items"] = len(data)
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": list(task.modalities),
              "inputs": input_policy(transforms, task.modalities), "text_policy": "each item's first caption"}
    return TaskOutput(result, **_samples(data, source, embeddings),
                      similarity=_sample_similarity(data, task.modalities[0], task.modalities[1]))


def linear_probe_task(model, transforms, tokenizer, task: LinearProbeTask, loading: Loading) -> TaskOutput:
    """Embed train and test data once each, fit the probe (`mmcl.eval.linear_probe`) on the train features and
    score the test features; intervals resample the test items with the probe held fixed."""
    m = task.modality
    check_modalities(model, [m], f"{m} linear probe")
    train_source, test_source = open_spec(task.train_data), open_spec(task.data)
    classnames = linear_probe.shared_classnames(train_source, test_source)
    train, test = (embed_source(model, s, [m], transforms, tokenizer, loading, need_labels=True)
                   for s in (train_source, test_source))
    # A list, not a generator: both sets are checked, so that multilabel false refuses lists in either.
    multilabel = any([label_lists.is_multilabel(d, task.multilabel, f"task {task.label}") for d in (train, test)])
    if multilabel:
        train_y, test_y = (label_lists.targets(d, len(classnames), s.path)
                           for d, s in ((train, train_source), (test, test_source)))
    else:
        train_y, test_y = train.labels, test.labels
        linear_probe.check_labels(test_y, len(classnames), test_source.path, every_class=False)
        linear_probe.check_labels(train_y, len(classnames), train_source.path, every_class=True)
    picked, short = linear_probe.fewshot_indices(train_y, len(classnames), task.fewshot_k, task.seed)
    if multilabel:  # on the items drawn: a few-shot draw of positives may leave a class without a negative
        linear_probe.check_targets(train_y[picked], train_source.path)
    probe = linear_probe.train_probe(train.features[m][picked], train_y[picked], len(classnames), task)
    scores = probe.scores(test.features[m])
    metrics = {**(scored_multilabel(scores, test_y) if multilabel else scored_classification(scores, test_y)),
               "weight_decay": probe.weight_decay, "num_train": probe.num_train,
               "num_validation": probe.num_validation, "num_test": len(test), "fewshot_k": task.fewshot_k,
               "fewshot_short_classes": short}
    classifier = ("one-vs-rest logistic regression (one sigmoid per class)" if multilabel
                  else "multinomial logistic regression")
    result = {"metrics": metrics, "dataset": _describe(test_source, test),
              "train_dataset": _describe(train_source, train), "modality": m, "classnames": classnames,
              "probe": {"weight_decays": task.weight_decays,
                        "validation_mAP" if multilabel else "validation_top1": probe.validation,
                        "validation_fraction": task.validation_fraction, "seed": task.seed,
                        "max_iterations": task.max_iterations,
                        "classifier": f"{classifier}, full-batch L-BFGS in float64"},
              "inputs": input_policy(transforms, [m])}
    sample = spread(len(test))
    if multilabel:
        return TaskOutput(result, {m: test.features[m][sample]}, item_hits=[ItemScores(scores, test_y)])
    return TaskOutput(result, {m: test.features[m][sample]}, {m: test.labels[sample]}, classnames,
                      item_hits=[classification_hits(scores, test.labels)])


class TriggeredTransform:
    """An image transform with a backdoor trigger applied to the decoded image first. A randomly placed patch goes
    where the image's own pixels say (a hash seeds the place), so every run, worker and process agrees.
    `cache_tag` keeps its batches apart from the clean ones in a decoded-batch cache."""

    def __init__(self, base, spec: TriggerSpec):
        self.base, self.spec = base, spec
        self.cache_tag = f"trigger {sorted(asdict(spec).items())}"

    def __call__(self, image):
        image = image.convert("RGB")
        place = random.Random(zlib.crc32(image.tobytes()) ^ self.spec.seed)
        return self.base(apply_image_trigger(image, self.spec, place)[0])


def backdoor_task(model, transforms, tokenizer, task: BackdoorTask, loading: Loading) -> TaskOutput:
    """Zero-shot classification of the clean images, then of every non-target image with the trigger: the attack
    success rate is the share of those sent to the target class, beside the share of their clean versions already
    sent there and the clean top-1."""
    check_modalities(model, ["image", "text"], "backdoor evaluation")
    source = open_spec(task.data)
    if task.target not in (source.classnames or []):
        raise UserError(f"task {task.label}: target {task.target!r} is not one of the class names of {source.path}")
    target = source.classnames.index(task.target)
    where = f"task {task.label}"
    templates, templates_source = resolve_templates(task.templates, "image", source, where)
    classes = class_embeddings(model, tokenizer, source.classnames,
                               class_prompt_lists(source.classnames, templates, {}, where), loading.device)
    spec = TriggerSpec(kind=task.trigger.kind, patch_size=task.trigger.patch_size, position=task.trigger.position,
                       alpha=task.trigger.alpha, seed=task.trigger.seed)
    clean = embed_source(model, source, ["image"], transforms, tokenizer, loading, need_labels=True)
    listed = label_lists.first_listed(clean)
    if listed is not None:
        raise UserError(f"task {task.label}: a backdoor evaluation needs one class per image; item {listed!r} of "
                        f"{source.path} carries a label list")
    triggered = embed_source(model, source, ["image"], {**transforms, "image": TriggeredTransform(
        transforms["image"], spec)}, tokenizer, loading, need_labels=True)
    row = {key: i for i, key in enumerate(clean.keys)}  # an image the trigger does not fit is skipped and counted
    rows = torch.tensor([row[key] for key in triggered.keys], dtype=torch.long)
    labels = clean.labels
    clean_pred = class_scores(clean.features["image"], classes).argmax(1)
    triggered_pred = class_scores(triggered.features["image"], classes).argmax(1)
    victims = labels[rows] != target
    if not victims.any():
        raise UserError(f"task {task.label}: every image is of the target class {task.target!r}: nothing to attack")
    sent = triggered_pred[victims] == target
    already = clean_pred[rows][victims] == target
    correct = clean_pred == labels
    metrics = {"attack_success_rate": sent.double().mean().item(),
               "clean_target_rate": already.double().mean().item(),
               "clean_top1": correct.double().mean().item(),
               "num_attacked": int(victims.sum()), "num_samples": len(clean),
               "num_classes": len(source.classnames), "chance_top1": 1.0 / len(source.classnames)}
    result = {"metrics": metrics, "dataset": {**_describe(source, clean), "skipped_with_trigger": triggered.skipped},
              "classnames": source.classnames, "target": task.target, "trigger": asdict(spec),
              "templates": templates, "templates_source": templates_source,
              "inputs": input_policy(transforms, ["image"])}
    return TaskOutput(result, item_hits=[ItemHits({"attack_success_rate": sent, "clean_target_rate": already}),
                                         ItemHits({"clean_top1": correct})])


RUNNERS = {
    "zeroshot_classification": zeroshot_classification,
    "retrieval": retrieval_task,
    "multimodal_retrieval": multimodal_retrieval_task,
    "geometry": geometry_task,
    "linear_probe": linear_probe_task,
    "backdoor": backdoor_task,
}


def evaluate_task(model, transforms, tokenizer, task: EvalTask, device: torch.device | str = "cpu",
                  batch_size: int = 64, num_workers: int = 0, cache: DecodedCache | None = None, rank: int = 0,
                  world_size: int = 1, image_limits: ImageLimits | None = None,
                  bootstrap: BootstrapConfig | None = None) -> TaskOutput:
    """One task on a model object; the model is put in eval mode for the call and restored afterwards.
    `cache`, `rank`, `world_size` and `image_limits` (default: `ImageLimits()`): see `mmcl.eval.embed.Loading`.
    With `bootstrap`, the result holds `intervals` (metric key as in `flatten(metrics)` → [low, high]) right after
    `metrics`, and the settings they were made with under `bootstrap`; a geometry task has neither."""
    was_training = model.training
    model.eval()
    try:
        out = RUNNERS[task.type](model, transforms, tokenizer, task,
                                 Loading(torch.device(device), batch_size, num_workers, cache, rank, world_size,
                                         image_limits or ImageLimits(),
                                         task.audio_windows if task.audio_windows.mode == "all" else None))
    finally:
        model.train(was_training)
    head = {"task": task.type, "name": task.label, "metrics": out.result.pop("metrics")}
    if task.audio_windows.mode == "all":
        out.result["audio_windows"] = task.audio_windows.model_dump()
    if bootstrap is not None and out.item_hits:
        head.update(intervals=intervals(out.item_hits, bootstrap), bootstrap=settings(bootstrap))
    out.result = {**head, **out.result, "versions": versions()}
    return out


def run_tasks(model, transforms, tokenizer, tasks: list[EvalTask], device: torch.device | str = "cpu",
              batch_size: int = 64, num_workers: int = 0, cache: DecodedCache | None = None, rank: int = 0,
              world_size: int = 1, image_limits: ImageLimits | None = None,
              bootstrap: BootstrapConfig | None = None) -> dict[str, dict]:
    """Every task's result, keyed by task name. `transforms` is the per-modality evaluation transforms dict
    (`ModalityTransforms.eval`). Scalars for a training log: `mmcl.eval.scalars(results)`. Pass the same `cache`
    (a `DecodedCache`) on every call of a training run to decode the evaluation data once, within its budget. With
    `world_size` > 1 every process calls this with its `rank`: each embeds its share, all return the same results.
    `bootstrap`: see `evaluate_task`."""
    results = {}
    for task in tasks:
        if task.label in results:
            raise UserError(f"two evaluation tasks are named {task.label!r}; give them distinct names")
        results[task.label] = evaluate_task(model, transforms, tokenizer, task, device, batch_size, num_workers,
                                            cache, rank, world_size, image_limits, bootstrap).result
    return results


def run_evaluation(model_spec: str, config: EvalConfig, weights: str | None = None, device: str = "cpu",
                   output: str | Path | None = None, report_dir: str | Path | None = None, rank: int = 0,
                   world_size: int = 1) -> list[dict]:
    """Run every task of `config` on the model; write the JSON result and, with `report_dir`, Markdown + PNGs.
    With `world_size` > 1 every process calls this and embeds its share of the data; rank 0 writes."""
    model, transforms, tokenizer, description = load_eval_model(model_spec, weights)
    model.to(device)
    model_info = describe_model(model, description)
    outputs = []
    for task in config.tasks:
        out = evaluate_task(model, transforms.eval, tokenizer, task, device, config.batch_size, config.num_workers,
                            rank=rank, world_size=world_size, image_limits=config.image_limits,
                            bootstrap=config.bootstrap)
        out.result["model"] = model_info
        outputs.append(out)
    results = [o.result for o in outputs]
    if rank != 0:
        return results
    if output:
        write_json(results[0] if len(results) == 1 else {"results": results}, output)
    if report_dir:
        from mmcl.eval.plots import write_plots  # matplotlib is only imported when plots are asked for

        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "summary.md").write_text(markdown(results, model_spec), encoding="utf-8")
        for out in outputs:
            write_plots(out, report_dir)
    return results
