"""Evaluation recipe: zero-shot classification of a checkpoint on a class-folder image set.

    mmcl eval runs/demo/checkpoints/step-00000200 --data eval_images/ --templates templates.txt

Load the checkpoint ▶ embed every class's prompts ▶ embed every image ▶ score ▶ write a JSON result that
records the exact prompts, so the number can be reproduced.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

import mmcl
from mmcl.errors import UserError
from mmcl.eval.datasets import ClassFolderImages, collate_skipping
from mmcl.eval.zeroshot import DEFAULT_TEMPLATES, class_embeddings, classification_metrics, embed_queries
from mmcl.models import load_model


def read_templates(path: str | Path | None) -> list[str]:
    """Prompt templates, one per line with `{c}` where the class name goes (CLIP_benchmark's format)."""
    if path is None:
        return list(DEFAULT_TEMPLATES)
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [line for line in lines if "{c}" not in line]
    if not lines or bad:
        raise UserError(f"{path}: every template needs a {{c}} placeholder" + (f"; bad: {bad[0]!r}" if bad else ""))
    return lines


def zero_shot_classification(checkpoint: str | Path, data_dir: str | Path, templates: list[str],
                             batch_size: int = 64, num_workers: int = 0) -> dict:
    model, transforms, tokenizer = load_model(checkpoint)
    for modality in ("image", "text"):
        if modality not in model.modalities:
            raise UserError(f"{checkpoint}: image zero-shot classification needs a {modality} tower; "
                            f"the model has {model.modalities}")
    model.eval()
    device = torch.device("cpu")
    dataset = ClassFolderImages(data_dir, transforms.eval["image"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_skipping)
    skipped = 0

    def readable_batches():
        nonlocal skipped
        for inputs, labels, n_skipped in loader:
            skipped += n_skipped
            if len(labels):
                yield inputs, labels

    classes = class_embeddings(model, tokenizer, dataset.classnames, templates, device)
    queries, labels = embed_queries(model, "image", readable_batches(), device)
    return {
        "task": "zeroshot_classification",
        "modality": "image",
        "model": str(checkpoint),
        "dataset": str(data_dir),
        "metrics": classification_metrics(queries, classes, labels),
        "skipped_unreadable": skipped,
        "classnames": dataset.classnames,
        "templates": templates,
        "versions": {"mmcl": mmcl.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def write_result(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def _run(args) -> int:
    result = zero_shot_classification(args.checkpoint, args.data, read_templates(args.templates),
                                      batch_size=args.batch_size, num_workers=args.num_workers)
    metrics = result["metrics"]
    print(f"zero-shot top-1: {metrics['top1']:.4f} (chance {metrics['chance_top1']:.4f}) "
          f"on {metrics['num_samples']} images, {metrics['num_classes']} classes")
    if args.output:
        print(f"result: {write_result(result, args.output)}")
    return 0


def register(commands) -> None:
    """Add `mmcl eval` to the top-level parser."""
    parser = commands.add_parser("eval", help="Evaluate a checkpoint zero-shot.",
                                 description="Zero-shot image classification on a CLASS/NAME.jpg folder.")
    parser.add_argument("checkpoint", help="Checkpoint folder (model.safetensors + model.yaml).")
    parser.add_argument("--data", required=True, help="Folder of images laid out CLASS/NAME.jpg.")
    parser.add_argument("--templates", help="Prompt templates file, one per line with {c}; default: built-in set.")
    parser.add_argument("--batch-size", type=int, default=64, help="Images per forward pass (default 64).")
    parser.add_argument("--num-workers", type=int, default=0, help="Image loading workers (default 0).")
    parser.add_argument("--output", help="Write the full result (metrics, prompts, versions) to this JSON file.")
    parser.set_defaults(func=_run)
