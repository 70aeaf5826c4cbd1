"""Evaluation recipe: load a model, run evaluation tasks, write JSON + Markdown + plots.

    mmcl eval runs/demo/checkpoints/step-00000200 --data eval_images/ --templates templates.txt --name shapes
    mmcl eval CHECKPOINT --data shards/ --task retrieval --modalities image text --report-dir report/
    mmcl eval open_clip:ViT-B-32 --weights vitb32.safetensors --tasks tasks.yaml --output result.json
    mmcl eval --compare a.json b.json
    mmcl eval runs/a runs/b/checkpoints/step-* --tasks suite.yaml --table sweep/ --skip-existing
    torchrun --nproc_per_node 8 -m pipelines.cli eval CHECKPOINT --tasks tasks.yaml   # each process embeds 1/8

Load the model ▶ for each task: embed the data (and class prompts) ▶ score ▶ write a result that records the
dataset, the exact prompts and label text, the input (e.g. audio crop) policy and library versions.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcl.config import validate
from mmcl.eval import EvalConfig, run_evaluation
from mmcl.eval.report import write_json
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


def evaluate(args, model: str, config: EvalConfig, output=None, report_dir=None) -> list[dict] | None:
    """`config`'s tasks on `model`: in this process, or shared by the processes of torchrun / accelerate launch
    (each embeds its share of the data); the results on the main process, None on the others."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        with process_group() as state:
            results = run_evaluation(model, config, args.weights, str(state.device), output, report_dir,
                                     state.process_index, state.num_processes)
        return results if state.is_main_process else None
    return run_evaluation(model, config, args.weights, args.device, output, report_dir)


def run(args, config: EvalConfig) -> int:
    """`mmcl eval` with its flags already turned into `config`: evaluate, print each task's headline."""
    if args.table:
        return run_table(args, config)
    results = evaluate(args, args.model, config, args.output, args.report_dir)
    if results is None:
        return 0
    for result in results:
        print(f"{result['name']}: {headline(result)}")
        if skipped(result):
            print(f"{result['name']}: {skipped(result)}")
    if args.output:
        print(f"result: {args.output}")
    if args.report_dir:
        print(f"report: {Path(args.report_dir) / 'summary.md'} (and PNG plots)")
    return 0


def run_table(args, config: EvalConfig) -> int:
    """`mmcl eval MODEL... --tasks suite.yaml --table DIR`: every model on every task, one result file per pair
    (`--skip-existing` keeps those already there), then one CSV and one Markdown table."""
    from mmcl.eval import table

    table_dir, names = Path(args.table), [task.label for task in config.tasks]
    for model in args.models:
        todo = table.missing_tasks(table_dir, model, names, args.skip_existing)
        if not todo:
            print(f"{model}: every task has a result in {table_dir} (--skip-existing)")
            continue
        results = evaluate(args, model, config.model_copy(update={"tasks": [t for t in config.tasks
                                                                            if t.label in todo]}))
        if results is None:
            continue
        table.store(table_dir, model, results)
        for result in results:
            print(f"{model} {result['name']}: {headline(result)}")
    if int(os.environ.get("RANK", "0")) == 0:
        csv_path, md_path = table.build(table_dir, args.models, names)
        print(f"table: {md_path} and {csv_path}")
    return 0
