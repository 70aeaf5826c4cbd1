"""`mmcl export`: hand a trained model to another tool, in that tool's own format.

    mmcl export runs/demo --format open_clip --output exported/
    python -c "import open_clip; open_clip.create_model_and_transforms('local-dir:exported')"
    mmcl export runs/demo --format onnx --output onnx/     # one ONNX file per tower + onnx_model.json
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmcl.errors import UserError

log = logging.getLogger("mmcl")

FORMATS = ("open_clip", "onnx")


def register(parser) -> None:
    parser.description = ("Write a checkpoint in another tool's format. open_clip: a folder that "
                          "open_clip.create_model_and_transforms('local-dir:DIR') loads, with the same embeddings, "
                          "logit scale and evaluation preprocessing. onnx: one ONNX file per tower (any batch size, "
                          "unit-length embeddings out) and onnx_model.json describing inputs and preprocessing "
                          "(needs the onnx extra: pip install 'mmcl[onnx]').")
    parser.add_argument("checkpoint", help="Checkpoint folder (model.safetensors + model.yaml, or a training "
                        "checkpoint step-N/ holding model/), or a training run folder (its best checkpoint, else its "
                        "latest).")
    parser.add_argument("--format", required=True, choices=FORMATS, help="Target format.")
    parser.add_argument("--output", required=True, help="Folder to write (created; an existing export is replaced).")
    parser.set_defaults(func=run)


def run(args) -> int:
    if not Path(args.checkpoint).exists():
        raise UserError(f"{args.checkpoint}: no such checkpoint or run folder")
    if args.format == "onnx":
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
        except ImportError:
            raise UserError("--format onnx needs onnx, onnxscript and onnxruntime: pip install 'mmcl[onnx]'") from None
    from mmcl.eval.models import load_eval_model

    model, _, _, description = load_eval_model(args.checkpoint)
    source = description.get("checkpoint", args.checkpoint)
    if args.format == "open_clip":
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
