"""Demo recipe: the whole pipeline on generated data, on a CPU, in a few minutes.

generate captioned shapes (+ a held-out evaluation set) ▶ `mmcl shards prepare` ▶ `mmcl train configs/demo.yaml`
▶ `mmcl eval` zero-shot ▶ print the accuracy beside chance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from data_tools import demo_shapes
from mmcl.config import load_config
from pipelines.cli import main as mmcl
from pipelines.evaluate import read_templates, write_result, zero_shot_classification
from pipelines.pretrain import train
from pipelines.pretrain_config import PretrainConfig

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def run_demo(output_dir: str | Path, steps: int | None = None, train_per_class: int = 100,
             eval_per_class: int = 20) -> dict:
    out = Path(output_dir)
    print(f"[1/4] generating demo data in {out}/raw")
    pairs = demo_shapes.write_pairs(out / "raw" / "train", per_class=train_per_class, seed=0)
    eval_dir = demo_shapes.write_class_folders(out / "raw" / "eval", per_class=eval_per_class, seed=1)
    templates_file = demo_shapes.write_templates(out / "raw" / "templates.txt")

    print(f"[2/4] preparing shards in {out}/shards")
    shard_size = max(1, train_per_class * len(demo_shapes.classnames()) // 8)
    if mmcl(["shards", "prepare", str(pairs), "--output", str(out / "shards"), "--shard-size", str(shard_size)]):
        raise RuntimeError("shard preparation failed (see the message above)")

    print(f"[3/4] training (config {DEMO_CONFIG.name})")
    shutil.rmtree(out / "run", ignore_errors=True)  # the demo always trains afresh; a real run would refuse
    overrides = [f"data.train_shards={out / 'shards'}", f"train.output_dir={out / 'run'}"]
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    checkpoint = train(load_config(PretrainConfig, DEMO_CONFIG, overrides))

    print("[4/4] zero-shot evaluation on held-out images")
    result = zero_shot_classification(checkpoint, eval_dir, read_templates(templates_file))
    result_file = write_result(result, out / "run" / "zeroshot.json")
    metrics = result["metrics"]
    print(f"zero-shot top-1 {metrics['top1']:.3f} (chance {metrics['chance_top1']:.3f}), "
          f"top-5 {metrics['top5']:.3f}, mean per-class recall {metrics['mean_per_class_recall']:.3f}")
    print(f"checkpoint: {checkpoint}\nresult: {result_file}")
    return result


def _run(args) -> int:
    run_demo(args.output_dir, steps=args.steps)
    return 0


def register(commands) -> None:
    """Add `mmcl demo` to the top-level parser."""
    parser = commands.add_parser("demo", help="Generate demo data, prepare shards, train and evaluate.",
                                 description="The whole pipeline on built-in generated data, in minutes on a CPU.")
    parser.add_argument("--output-dir", default="mmcl-demo", help="Where data, shards and the run go (default mmcl-demo).")
    parser.add_argument("--steps", type=int, default=None, help="Training steps (default: the demo config's).")
    parser.set_defaults(func=_run)
