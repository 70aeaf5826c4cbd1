"""Contrastive objectives behind one contract: ``loss(outputs, batch=None) -> dict[str, Tensor]`` of named terms.

``create_loss(name, **options)`` builds a registered loss, ``list_losses()`` names them all. Every loss honours the
per-modality presence masks and is exact across processes (see :mod:`mmcl.losses.distributed`).
"""

from mmcl.losses import clip, cwcl, dcl, geometry, multiview, siglip, symile  # noqa: F401  (importing a loss module registers its losses)
from mmcl.losses.registry import create_loss, list_losses, register_loss

__all__ = ["create_loss", "list_losses", "register_loss"]
