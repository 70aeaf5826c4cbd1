"""Evaluation recipe: load a model, run evaluation tasks, write JSON + Markdown + plots.

    mmcl eval runs/demo/checkpoints/step-00000200 --data eval_images/ --templates templates.txt --name shapes
    mmcl eval CHECKPOINT --data shards/ --task retrieval --modalities image text --report-dir report/
    mmcl eval open_clip:ViT-B-32 --weights vitb32.safetensors --tasks tasks.yaml --output result.json
    mmcl eval --compare a.json b.json
    torchrun --nproc_per_node 8 -m pipelines.cli eval CHECKPOINT --tasks tasks.yaml   # each process embeds 1/8

Load the model ▶ for each task: embed the data (and class prompts) ▶ score ▶ write a result that records the
dataset, the exact prompts and label text, the input (e.g. audio crop) policy and library versions.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcl.config import load_config, validate
from mmcl.errors import UserError
from mmcl.eval import EvalConfig, run_evaluation
from mmcl.eval.compare import compare
from mmcl.eval.report import read_results, write_json
from mmcl.eval.summary import headline, skipped
from mmcl.training.launch import process_group


def zero_shot_classification(checkpoint: str | Path, data_dir: str | Path, templates: list[str],
                             batch_size: int = 64, num_workers: int = 0, modality: str = "image") -> dict:
    """One zero-shot classification of a checkpoint (or `open_clip:`/built-in model spec) on `data_dir`."""
    task = {"type": "zeroshot_classification", "data": {"path": str(data_dir)}, "modality": modality,
            "templates": templates}
    config = validate(EvalConfig, {"tasks": [task], "batch_size": batch_size, "num_workers": num_workers},
                      "zero-shot classification")
    return run_evaluation(str(checkpoint), config)[0]


def write_result(result: dict, path: str | Path) -> Path:
    """Write one result as JSON (kept for callers of the first evaluation recipe, e.g. the demo)."""
    return write_json(result, path)


def _config_from_args(args) -> EvalConfig:
    if args.tasks:
        if args.data or args.templates or args.classnames or args.modalities or args.name:
            raise UserError("--tasks FILE.yaml holds each task's data, templates, class names, modalities and "
                            "name; drop --data/--templates/--classnames/--modalities/--name")
        return load_config(EvalConfig, args.tasks, [f"batch_size={args.batch_size}",
                                                   f"num_workers={args.num_workers}"])
    if not args.data:
        raise UserError("give --data DIR (with --task) or --tasks FILE.yaml")
    task: dict = {"type": args.task, "data": {"path": args.data, "format": args.format}}
    if args.name:
        task["name"] = args.name
    if args.classnames:
        task["data"]["classnames"] = args.classnames
    if args.task == "zeroshot_classification":
        task["modality"] = args.modality
        if args.templates:
            task["templates"] = args.templates  # a file path: read by the task, which records it as the origin
    elif args.templates:
        raise UserError("--templates only applies to --task zeroshot_classification")
    if args.modalities:
        if args.task == "zeroshot_classification":
            raise UserError("--modalities does not apply to zero-shot classification; use --modality")
        task["modalities"] = args.modalities
    return validate(EvalConfig, {"tasks": [task], "batch_size": args.batch_size, "num_workers": args.num_workers},
                    "mmcl eval flags")


def _run(args) -> int:
    if args.compare:
        a, b = args.compare
        print(compare(read_results(a), read_results(b), (a, b)))
        return 0
    if not args.model:
        raise UserError("give a MODEL (checkpoint folder, open_clip:NAME or built-in name), or --compare A B")
    config = _config_from_args(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun / accelerate launch: share the data
        with process_group() as state:
            results = run_evaluation(args.model, config, args.weights, str(state.device), args.output,
                                     args.report_dir, state.process_index, state.num_processes)
        if not state.is_main_process:
            return 0
    else:
        results = run_evaluation(args.model, config, args.weights, args.device, args.output, args.report_dir)
    for result in results:
        print(f"{result['name']}: {headline(result)}")
        if skipped(result):
            print(f"{result['name']}: {skipped(result)}")
    if args.output:
        print(f"result: {args.output}")
    if args.report_dir:
        print(f"report: {Path(args.report_dir) / 'summary.md'} (and PNG plots)")
    return 0


def register(parser) -> None:
    """Fill in `mmcl eval` (its parser, made by pipelines/cli.py)."""
    parser.description = (
        "Zero-shot classification (image or audio vs text prompts), retrieval between two modalities, "
        "three-modality retrieval and embedding geometry, on shards (CLIP_benchmark wds layout), class "
        "folders or a manifest. Writes a JSON result, and with --report-dir a Markdown summary and plots.")
    parser.add_argument("model", nargs="?", help="Checkpoint folder (model.safetensors + model.yaml, or a training "
                        "checkpoint step-N/ holding model/), "
                        "open_clip:NAME (with --weights), or a built-in model name (random weights, a baseline).")
    parser.add_argument("--weights", help="Weights for an open_clip:NAME model (.safetensors).")
    parser.add_argument("--data", help="Shard folder, CLASS/NAME.ext folder or .csv/.tsv/.jsonl manifest.")
    parser.add_argument("--format", default="auto", choices=("auto", "shards", "class_folders", "manifest"),
                        help="How to read --data (default: auto).")
    parser.add_argument("--task", default="zeroshot_classification",
                        choices=("zeroshot_classification", "retrieval", "multimodal_retrieval", "geometry"),
                        help="What to measure on --data (default zeroshot_classification).")
    parser.add_argument("--modality", default="image", choices=("image", "audio"),
                        help="Query modality of zero-shot classification (default image).")
    parser.add_argument("--modalities", nargs="+", choices=("image", "text", "audio"),
                        help="Modalities for retrieval (two), multimodal_retrieval (three) or geometry (two or more).")
    parser.add_argument("--templates", help="Prompt templates file, one per line with {c}; default: the dataset's "
                        "zeroshot_classification_templates.txt, else the built-in set for the modality (the same "
                        "for class folders, shards and manifests).")
    parser.add_argument("--classnames", help="Class names file, one per line in label order; default: the "
                        "dataset's classnames.txt or the class folder names.")
    parser.add_argument("--name", help="Name of the task in the result and summary (default TYPE/MODALITIES, e.g. "
                        "zeroshot_classification/image, whatever the data route).")
    parser.add_argument("--tasks", help="YAML file with `tasks:` (a list of task configs) instead of --data/--task.")
    parser.add_argument("--batch-size", type=int, default=64, help="Items a loader hands over at a time (default 64, "
                        "rounded to a multiple of the fixed 32-row forward pass; results do not depend on it).")
    parser.add_argument("--num-workers", type=int, default=0, help="Decoding worker processes (default 0).")
    parser.add_argument("--device", default="cpu",
                        help="Torch device (default cpu; under torchrun each process takes its own).")
    parser.add_argument("--output", help="Write the full result (metrics, prompts, versions) to this JSON file.")
    parser.add_argument("--report-dir", help="Write summary.md and PNG plots into this folder.")
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                        help="Print the metric differences of two result files side by side, and exit. Tasks "
                        "pair by name, else by task type and data (modalities, items, class names).")
    parser.set_defaults(func=_run)
