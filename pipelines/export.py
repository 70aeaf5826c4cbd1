"""`mmcl export`: hand a trained model to another tool, in that tool's own format.

    mmcl export runs/demo --format open_clip --output exported/
    python -c "import open_clip; open_clip.create_model_and_transforms('local-dir:exported')"
"""

from __future__ import annotations

import logging
from pathlib import Path

from mmcl.errors import UserError

log = logging.getLogger("mmcl")

FORMATS = ("open_clip",)


def register(parser) -> None:
    parser.description = ("Write a checkpoint in another tool's format. open_clip: a folder that "
                          "open_clip.create_model_and_transforms('local-dir:DIR') loads, with the same embeddings, "
                          "logit scale and evaluation preprocessing.")
    parser.add_argument("checkpoint", help="Checkpoint folder (model.safetensors + model.yaml, or a training "
                        "checkpoint step-N/ holding model/), or a training run folder (its best checkpoint, else its "
                        "latest).")
    parser.add_argument("--format", required=True, choices=FORMATS, help="Target format.")
    parser.add_argument("--output", required=True, help="Folder to write (created; an existing export is replaced).")
    parser.set_defaults(func=run)


def run(args) -> int:
    if not Path(args.checkpoint).exists():
        raise UserError(f"{args.checkpoint}: no such checkpoint or run folder")
    from mmcl.eval.models import load_eval_model
    from mmcl.interop.open_clip_format import export_open_clip

    model, _, _, description = load_eval_model(args.checkpoint)
    folder = export_open_clip(model, Path(args.output))
    log.info("exported %s as open_clip to %s: open_clip.create_model_and_transforms('local-dir:%s')",
             description.get("checkpoint", args.checkpoint), folder, folder)
    return 0
