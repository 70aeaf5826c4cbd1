"""Zero-shot classification time: mmcl's evaluation against open_clip's own zero-shot path.

Both sides classify the same shards (generated coloured shapes, CLIP_benchmark wds layout from
`mmcl shards prepare --class-folders`) with the same open_clip model and weights, the same templates,
batch size and loader workers. open_clip's path is `open_clip.build_zero_shot_classifier` plus a plain loop
over a webdataset loader (what open_clip's training-time zero-shot and CLIP_benchmark do). The ratio is
open_clip's time over ours (≥ 1.0: we are at least as fast); the accuracies and per-item predictions must agree.
Weights are randomly initialised (seed 0) and saved as safetensors unless --weights gives a local file.

    python benchmarks/eval_zeroshot.py --model ViT-S-32 --per-class 20 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
import webdataset as wds
from safetensors.torch import save_file

from data_tools import demo_shapes
from data_tools.prepare import prepare_shards
from mmcl.eval import EvalConfig, evaluate_task
from mmcl.eval.datasets import open_source
from mmcl.eval.openclip import load_open_clip


def open_clip_zero_shot(clip, preprocess, tokenizer, source, templates, batch_size,
                        workers) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's way: a prompt classifier, then logits = features @ classifier over a plain loader."""
    classifier = open_clip.build_zero_shot_classifier(
        clip, tokenizer, source.classnames, [lambda c, t=t: t.replace("{c}", c) for t in templates],
        num_classes_per_batch=10, device="cpu")
    dataset = (wds.WebDataset(source.urls, shardshuffle=False).decode("pil")
               .to_tuple("jpg", "cls").map_tuple(preprocess, int))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    predictions, labels = [], []
    with torch.no_grad():
        for images, target in loader:
            features = F.normalize(clip.encode_image(images), dim=-1)
            predictions.append((100.0 * features @ classifier).argmax(dim=1))
            labels.append(target)
    return torch.cat(predictions), torch.cat(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-S-32", help="open_clip config name (default ViT-S-32).")
    parser.add_argument("--weights", help="Local .safetensors weights (default: random, seed 0).")
    parser.add_argument("--per-class", type=int, default=20, help="Images per class; 12 classes (default 20).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per side, alternating; medians shown.")
    parser.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's choice).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        classes = demo_shapes.write_class_folders(tmp / "classes", per_class=args.per_class, seed=1)
        shards = tmp / "shards"
        prepare_shards(classes, shards, layout="class_folders", shard_size=max(1, args.per_class * 3),
                       progress=False, templates=list(demo_shapes.EVAL_TEMPLATES))
        weights = args.weights
        if weights is None:
            torch.manual_seed(0)
            weights = tmp / "weights.safetensors"
            save_file({k: v.contiguous() for k, v in open_clip.create_model(args.model).state_dict().items()}, weights)

        model, transforms, tokenizer = load_open_clip(args.model, weights)
        clip = model.clip.eval()
        preprocess = transforms.eval["image"]
        source = open_source(shards)
        task = EvalConfig.model_validate({"tasks": [{"type": "zeroshot_classification",
                                                     "data": {"path": str(shards)}}]}).tasks[0]

        def run_ours():
            return evaluate_task(model, transforms.eval, tokenizer, task, "cpu", args.batch_size, args.workers)

        def run_theirs():
            return open_clip_zero_shot(clip, preprocess, tokenizer, source, list(demo_shapes.EVAL_TEMPLATES),
                                       args.batch_size, args.workers)

        ours_times, theirs_times = [], []
        for repeat in range(args.repeats):
            sides = [(run_ours, ours_times), (run_theirs, theirs_times)]
            outputs = []
            for fn, times in sides if repeat % 2 == 0 else sides[::-1]:  # alternate who goes first
                start = time.perf_counter()
                outputs.append(fn())
                times.append(time.perf_counter() - start)
            ours, theirs = outputs if repeat % 2 == 0 else outputs[::-1]

    metrics = ours.result["metrics"]
    n, classes = metrics["num_samples"], metrics["num_classes"]
    predictions, labels = theirs
    their_top1 = (predictions == labels).float().mean().item()
    their_confusion = torch.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, -1)
    ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
    print(f"model {args.model}, {n} images, {metrics['num_classes']} classes x {len(ours.result['templates'])} "
          f"templates, batch {args.batch_size}, {args.workers} worker(s), {torch.get_num_threads()} thread(s)")
    print(f"mmcl      {ours_median:7.2f} s  ({n / ours_median:6.1f} img/s)  top-1 {metrics['top1']:.4f}  "
          f"runs {', '.join(f'{t:.2f}' for t in ours_times)}")
    print(f"open_clip {theirs_median:7.2f} s  ({n / theirs_median:6.1f} img/s)  top-1 {their_top1:.4f}  "
          f"runs {', '.join(f'{t:.2f}' for t in theirs_times)}")
    # Each repeat runs both sides back to back, so a per-pair ratio cancels most of the drift in machine load.
    ratios = sorted(t / o for o, t in zip(ours_times, theirs_times))
    print(f"speed ratio open_clip/mmcl: median of paired runs {statistics.median(ratios):.2f}x "
          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}; ratio of medians {theirs_median / ours_median:.2f}x; "
          f"target >= 1.0)")
    print(f"top-1 agree: {abs(metrics['top1'] - their_top1) < 1e-9}; confusion matrices identical: "
          f"{their_confusion.tolist() == metrics['confusion_matrix']}")


if __name__ == "__main__":
    main()
