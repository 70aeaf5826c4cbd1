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


def run(args, config: EvalConfig) -> int:
    """`mmcl eval` with its flags already turned into `config`: evaluate, print each task's headline."""
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
