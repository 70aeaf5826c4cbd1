"""`mmcl export`: hand a trained model to another tool, in that tool's own format.

    mmcl export runs/demo --format open_clip --output exported/
    python -c "import open_clip; open_clip.create_model_and_transforms('local-dir:exported')"
    mmcl export runs/demo --format onnx --output onnx/     # one ONNX file per tower + onnx_model.json
    mmcl export runs/finetune --interpolate pretrained/ --alpha 0.5 --format mmcl --output wise/   # WiSE-FT
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmcl.errors import UserError

log = logging.getLogger("mmcl")

FORMATS = ("mmcl", "open_clip", "onnx")


def register(parser) -> None:
    parser.description = ("Write a checkpoint in another tool's format. open_clip: a folder that "
                          "open_clip.create_model_and_transforms('local-dir:DIR') loads, with the same embeddings, "
                          "logit scale and evaluation preprocessing. onnx: one ONNX file per tower (any batch size, "
                          "unit-length embeddings out) and onnx_model.json describing inputs and preprocessing "
                          "(needs the onnx extra: pip install 'mmcl[onnx]'). mmcl: an mmcl checkpoint folder, for "
                          "--interpolate.")
    parser.add_argument("checkpoint", help="Checkpoint folder (model.safetensors + model.yaml, or a training "
                        "checkpoint step-N/ holding model/), a training run folder (its best checkpoint, else its "
                        "latest), or a model YAML with the weights it names (e.g. an open_clip: checkpoint).")
    parser.add_argument("--format", required=True, choices=FORMATS, help="Target format.")
    parser.add_argument("--output", required=True, help="Folder to write (created; an existing export is replaced).")
    parser.add_argument("--weights", choices=("model", "ema"), default="model", help="A training checkpoint's "
                        "weights, or their moving average (train.ema; its ema/ folder). Default: model.")
    parser.add_argument("--interpolate", metavar="BASE", help="WiSE-FT: export (1 - alpha) * BASE + alpha * "
                        "CHECKPOINT, BASE of the same architecture: the model before fine-tuning, as a checkpoint or "
                        "as the model YAML the fine-tuning started from.")
    parser.add_argument("--alpha", type=float, help="Weight of CHECKPOINT in --interpolate (default 0.5; 0: BASE, "
                        "1: CHECKPOINT).")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.alpha is not None and args.interpolate is None:
        raise UserError("--alpha is the weight of --interpolate; give --interpolate BASE too")
    alpha = 0.5 if args.alpha is None else args.alpha
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha {alpha}: the interpolation weight must be in [0, 1] (0: BASE, 1: CHECKPOINT)")
    for given in (args.checkpoint, args.interpolate):
        if given is not None and not Path(given).exists():
            raise UserError(f"{given}: no such checkpoint or run folder")
    if args.format == "onnx":
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
        except ImportError:
            raise UserError("--format onnx needs onnx, onnxscript and onnxruntime: pip install 'mmcl[onnx]'") from None
    from mmcl.eval.models import load_eval_model

    model, _, _, description = load_eval_model(args.checkpoint, "ema" if args.weights == "ema" else None)
    source = description.get("checkpoint", args.checkpoint)
    if args.interpolate is not None:
        from mmcl.interop.interpolate import interpolate

        base, _, _, base_description = load_eval_model(args.interpolate)
        model = interpolate(base, model, alpha, base_name=args.interpolate)
        source = f"{1 - alpha:g} x {base_description.get('checkpoint', args.interpolate)} + {alpha:g} x {source}"
    if args.format == "mmcl":
        from mmcl.models import save_model

        folder = save_model(model, Path(args.output))
        log.info("wrote %s as an mmcl checkpoint to %s", source, folder)
    elif args.format == "open_clip":
        from mmcl.interop.open_clip_format import export_open_clip

        folder = export_open_clip(model, Path(args.output))
        log.info("exported %s as open_clip to %s: open_clip.create_model_and_transforms('local-dir:%s')",
                 source, folder, folder)
    else:
        from mmcl.interop.onnx_format import METADATA, export_onnx

        folder = export_onnx(model, Path(args.output))
        log.info("exported %s as ONNX to %s: towers %s; inputs and preprocessing in %s", source, folder,
                 ", ".join(model.towers), folder / METADATA)
    return 0
