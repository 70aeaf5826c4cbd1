"""The `mmcl` command: one subcommand per job, mirroring the layout (shards, train, eval, audit, demo, export,
config, models)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable

from mmcl.errors import UserError


def run_guarded(fn: Callable[..., int], *args) -> int:
    """Run a command: a user error is one line on stderr and exit code 2; a bug keeps its traceback."""
    try:
        return fn(*args)
    except UserError as err:
        print(f"mmcl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmcl: interrupted", file=sys.stderr)
        return 130


def _config_show(args: argparse.Namespace) -> int:
    if args.config is None:
        found = sorted(str(p) for p in Path("configs").glob("*.yaml"))
        raise UserError("give a pretraining config, e.g. `mmcl config show configs/demo.yaml`"
                        + (f" (configs here: {', '.join(found)})" if found else ""))
    from mmcl.config import load_config, to_commented_yaml
    from mmcl.training.config import PretrainConfig

    print(to_commented_yaml(load_config(PretrainConfig, args.config, args.overrides)))
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from mmcl.models.catalog import builtin_models

    models = builtin_models()
    width = max(map(len, models))
    for name, about in models.items():
        print(f"{name:<{width}}  {about}")
    print("\nDetails, parameters and FLOPs per tower: mmcl models show NAME")
    return 0


def _models_show(args: argparse.Namespace) -> int:
    from mmcl.config import to_commented_yaml
    from mmcl.models import create_model
    from mmcl.models.factory import resolve_model_config
    from mmcl.models.summary import format_summary, summarize

    cfg = resolve_model_config(args.name)
    model, _, _ = create_model(cfg)
    print(to_commented_yaml(cfg))
    print("\nparameters and forward FLOPs (one sample, multiply-add = 2) per tower:")
    print(format_summary(summarize(model)))
    return 0


# Each command's parser is filled in by a `register` function, imported only for the command being run, so that
# `mmcl --help` starts at once; none of them imports torch (the recipes import it when they run).
COMMANDS = {
    "shards": ("data_tools.cli", "register", "Prepare, verify and inspect WebDataset shards."),
    "train": ("pipelines.commands", "register_train", "Train a model from a YAML config."),
    "eval": ("pipelines.commands", "register_eval",
             "Evaluate a model zero-shot: classification, retrieval, embedding geometry."),
    "demo": ("pipelines.commands", "register_demo",
             "Build the emoji dataset, prepare shards, train an image-text-audio model and evaluate it."),
    "export": ("pipelines.export", "register", "Write a checkpoint in another tool's format (open_clip)."),
    "audit": ("pipelines.audit", "register", "Score a shard set's samples for poisoning (backdoors) from a model's "
              "embeddings."),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `mmcl` parser, with the full arguments of the command named in `argv` (the first non-option word)."""
    chosen = next((word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="mmcl", description="Multimodal contrastive pretraining: prepare shards, train, evaluate zero-shot."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug messages.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, register, summary) in COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        if name == chosen:
            getattr(importlib.import_module(module), register)(command)

    config = commands.add_parser("config", help="Inspect configs.", description="Inspect configs.")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser("show", help="Print a fully resolved, documented pretraining config.",
                                      description="Resolve a config with its overrides and print every field.")
    show.add_argument("config", nargs="?", help="Pretraining config YAML.")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Dotted overrides.")
    show.set_defaults(func=_config_show)

    models = commands.add_parser("models", help="List and describe model configs.",
                                 description="List and describe model configs.")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    model_commands.add_parser("list", help="Names of the built-in model configs.").set_defaults(func=_models_list)
    show_model = model_commands.add_parser("show", help="A model's config, and parameters and FLOPs per tower.")
    show_model.add_argument("name", help="Built-in model name or model YAML path.")
    show_model.set_defaults(func=_models_show)
    return parser


def configure_logging(verbose: bool = False) -> None:
    """mmcl's own messages at INFO (DEBUG with -v); the libraries' chatter only from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mmcl").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    configure_logging(args.verbose)
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
