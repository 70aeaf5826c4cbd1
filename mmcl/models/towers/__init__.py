"""Towers, one module per modality; importing this package registers every tower kind."""

from mmcl.models.towers import audio, image, text  # noqa: F401  (registration)
from mmcl.models.towers.base import Tower, build_tower, register_tower

__all__ = ["Tower", "build_tower", "register_tower"]
