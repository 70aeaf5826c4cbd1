"""Run evaluation tasks on a model object: the entry point for `mmcl eval` and for periodic evaluation in training."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import torch

import mmcl
from mmcl.data.image import ImageLimits
from mmcl.errors import UserError
from mmcl.eval import geometry, retrieval
from mmcl.eval.cache import DecodedCache
from mmcl.eval.datasets import open_source
from mmcl.eval.embed import Embedded, Loading, check_modalities, embed_source
from mmcl.eval.models import describe_model, load_eval_model
from mmcl.eval.report import markdown, write_json
from mmcl.eval.tasks import (EvalConfig, EvalTask, GeometryTask, MultimodalRetrievalTask, RetrievalTask,
                             ZeroShotClassificationTask)
from mmcl.eval.zeroshot import (DEFAULT_TEMPLATES, check_templates, class_embeddings, classification_metrics,
                                prompts, read_templates)

SAMPLE_ROWS = 32  # items shown in a similarity-matrix plot
PROJECTION_POINTS = 1000  # embeddings per modality kept for the 2-D projection plot


@dataclass
class TaskOutput:
    """A task's JSON-ready result, plus small embedding samples for plots."""

    result: dict
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # per modality, ≤ PROJECTION_POINTS rows
    similarity: tuple[torch.Tensor, str, str] | None = None  # sample score matrix, row and column axis names


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


def _templates(task: ZeroShotClassificationTask, source) -> list[str]:
    """The task's templates (a list or a file), else the dataset's templates file, else the built-in set."""
    if isinstance(task.templates, str):
        return read_templates(task.templates)
    if task.templates is not None:
        return check_templates(task.templates, f"task {task.label}: templates")
    if source.templates is not None:
        return check_templates(source.templates, f"{source.path}: zeroshot_classification_templates.txt")
    return list(DEFAULT_TEMPLATES[task.modality])


def _check_labels(task: ZeroShotClassificationTask, source, labels: torch.Tensor) -> None:
    names_from = source.classnames_file or source.path
    count = len(source.classnames)
    out_of_range = labels[(labels < 0) | (labels >= count)]
    if out_of_range.numel():
        raise UserError(f"{names_from}: lists {count} class names but the data holds label "
                        f"{int(out_of_range[0])} (labels must be 0..{count - 1})")
    unused = count - labels.unique().numel()
    if unused and not task.allow_missing_classes:
        raise UserError(f"{names_from}: lists {count} class names but the data's labels use only "
                        f"{count - unused}; fix the class names, or set allow_missing_classes to score against "
                        f"all {count} anyway")


def zeroshot_classification(model, transforms, tokenizer, task: ZeroShotClassificationTask,
                            loading: Loading) -> TaskOutput:
    check_modalities(model, [task.modality, "text"], f"zero-shot {task.modality} classification")
    source = open_source(task.data.path, task.data.format, task.data.classnames)
    if not source.classnames:
        raise UserError(f"{source.path}: no class names (add classnames.txt or set the task's data.classnames)")
    templates = _templates(task, source)
    data = embed_source(model, source, [task.modality], transforms, tokenizer, loading, need_labels=True)
    _check_labels(task, source, data.labels)
    classes = class_embeddings(model, tokenizer, source.classnames, templates, loading.device)
    queries = data.features[task.modality]
    result = {
        "metrics": classification_metrics(queries, classes, data.labels),
        "dataset": _describe(source, data),
        "modality": task.modality,
        "classnames": source.classnames,
        "templates": templates,
        "prompts": prompts(source.classnames, templates),
        "inputs": input_policy(transforms, [task.modality]),
    }
    return TaskOutput(result, {task.modality: queries[:PROJECTION_POINTS], "text (class prompts)": classes},
                      ((queries[:SAMPLE_ROWS] @ classes.T), task.modality, "class prompts"))


def _describe(source, data: Embedded) -> dict:
    return {**source.describe(), "num_items": len(data), "skipped": data.skipped}


def _first_captions(data: Embedded) -> torch.Tensor:
    """Each item's first caption embedding (captions are stored grouped by item, in order)."""
    first = torch.ones_like(data.text_owner, dtype=torch.bool)
    first[1:] = data.text_owner[1:] != data.text_owner[:-1]
    return data.features["text"][first]


def _paired(data: Embedded, modality: str) -> torch.Tensor:
    return _first_captions(data) if modality == "text" else data.features[modality]


def _sample_similarity(data: Embedded, a: str, b: str) -> tuple[torch.Tensor, str, str]:
    rows = slice(0, SAMPLE_ROWS)
    return _paired(data, a)[rows] @ _paired(data, b)[rows].T, a, b


def retrieval_task(model, transforms, tokenizer, task: RetrievalTask, loading: Loading) -> TaskOutput:
    a, b = task.modalities
    if a == "text":
        a, b = b, a  # the multi-caption side is always the candidate side of `paired_retrieval`
    check_modalities(model, [a, b], f"{a}-{b} retrieval")
    source = open_source(task.data.path, task.data.format, task.data.classnames)
    data = embed_source(model, source, [a, b], transforms, tokenizer, loading)
    owner = data.text_owner if b == "text" else torch.arange(len(data))
    metrics = retrieval.paired_retrieval(data.features[a], data.features[b], owner, (a, b), task.ks)
    metrics["num_items"] = len(data)
    metrics[f"num_{b}"] = int(data.features[b].shape[0])
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": [a, b],
              "inputs": input_policy(transforms, [a, b])}
    return TaskOutput(result, {m: _paired(data, m)[:PROJECTION_POINTS] for m in (a, b)}, _sample_similarity(data, a, b))


def multimodal_retrieval_task(model, transforms, tokenizer, task: MultimodalRetrievalTask,
                              loading: Loading) -> TaskOutput:
    modalities = list(task.modalities)
    check_modalities(model, modalities, "three-modality retrieval")
    source = open_source(task.data.path, task.data.format, task.data.classnames)
    data = embed_source(model, source, modalities, transforms, tokenizer, loading)
    embeddings = {m: _paired(data, m) for m in modalities}
    metrics = retrieval.multimodal_retrieval(embeddings, task.scorings, task.ks)
    metrics["num_items"] = len(data)
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": modalities,
              "inputs": input_policy(transforms, modalities), "text_policy": "each item's first caption"}
    return TaskOutput(result, {m: e[:PROJECTION_POINTS] for m, e in embeddings.items()},
                      _sample_similarity(data, modalities[0], modalities[1]))


def geometry_task(model, transforms, tokenizer, task: GeometryTask, loading: Loading) -> TaskOutput:
    check_modalities(model, task.modalities, "embedding geometry")
    source = open_source(task.data.path, task.data.format, task.data.classnames)
    data = embed_source(model, source, task.modalities, transforms, tokenizer, loading)
    embeddings = {m: _paired(data, m) for m in task.modalities}
    metrics = {m: geometry.modality_geometry(e) for m, e in embeddings.items()}
    for a, b in combinations(task.modalities, 2):
        metrics[f"{a}-{b}"] = geometry.pair_geometry(embeddings[a], embeddings[b], task.max_probe_samples)
    metrics["num_items"] = len(data)
    result = {"metrics": metrics, "dataset": _describe(source, data), "modalities": list(task.modalities),
              "inputs": input_policy(transforms, task.modalities), "text_policy": "each item's first caption"}
    return TaskOutput(result, {m: e[:PROJECTION_POINTS] for m, e in embeddings.items()},
                      _sample_similarity(data, task.modalities[0], task.modalities[1]))


RUNNERS = {
    "zeroshot_classification": zeroshot_classification,
    "retrieval": retrieval_task,
    "multimodal_retrieval": multimodal_retrieval_task,
    "geometry": geometry_task,
}


def evaluate_task(model, transforms, tokenizer, task: EvalTask, device: torch.device | str = "cpu",
                  batch_size: int = 64, num_workers: int = 0, cache: DecodedCache | None = None, rank: int = 0,
                  world_size: int = 1, image_limits: ImageLimits | None = None) -> TaskOutput:
    """One task on a model object; the model is put in eval mode for the call and restored afterwards.
    `cache`, `rank`, `world_size` and `image_limits` (default: `ImageLimits()`): see `mmcl.eval.embed.Loading`."""
    was_training = model.training
    model.eval()
    try:
        out = RUNNERS[task.type](model, transforms, tokenizer, task,
                                 Loading(torch.device(device), batch_size, num_workers, cache, rank, world_size,
                                         image_limits or ImageLimits()))
    finally:
        model.train(was_training)
    out.result = {"task": task.type, "name": task.label, **out.result, "versions": versions()}
    return out


def run_tasks(model, transforms, tokenizer, tasks: list[EvalTask], device: torch.device | str = "cpu",
              batch_size: int = 64, num_workers: int = 0, cache: DecodedCache | None = None, rank: int = 0,
              world_size: int = 1, image_limits: ImageLimits | None = None) -> dict[str, dict]:
    """Every task's result, keyed by task name. `transforms` is the per-modality evaluation transforms dict
    (`ModalityTransforms.eval`). Scalars for a training log: `mmcl.eval.scalars(results)`. Pass the same `cache`
    (a `DecodedCache`) on every call of a training run to decode the evaluation data once, within its budget. With
    `world_size` > 1 every process calls this with its `rank`: each embeds its share, all return the same results."""
    results = {}
    for task in tasks:
        if task.label in results:
            raise UserError(f"two evaluation tasks are named {task.label!r}; give them distinct names")
        results[task.label] = evaluate_task(model, transforms, tokenizer, task, device, batch_size, num_workers,
                                            cache, rank, world_size, image_limits).result
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
                            rank=rank, world_size=world_size, image_limits=config.image_limits)
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
