"""LiT-style locking: freeze a tower's layer groups except the last N, including BatchNorm statistics."""

from __future__ import annotations

from open_clip.utils import freeze_batch_norm_2d
from timm.models import group_modules, group_parameters

from mmcl.errors import UserError
from mmcl.models.towers import Tower


def layer_groups(tower: Tower) -> list[list[str]]:
    """Parameter names in layer groups, stem first; the last group is the head (final norm, projection)."""
    groups = group_parameters(tower, tower.group_matcher)
    return [groups[i] for i in sorted(groups)]


def lock(tower: Tower, unlocked_layers: int = 0) -> None:
    """Stop gradients to all but the last `unlocked_layers` groups; BatchNorms in locked groups stop updating
    their running statistics too."""
    groups = layer_groups(tower)
    if unlocked_layers > len(groups):
        raise UserError(f"unlocked_layers is {unlocked_layers} but the tower has only {len(groups)} layer groups")
    n_locked = len(groups) - unlocked_layers
    for names in groups[:n_locked]:
        for name in names:
            tower.get_parameter(name).requires_grad_(False)
    # A locked BatchNorm in train mode would still update its running statistics.
    locked_modules = {name for name, gid in group_modules(tower, tower.group_matcher, reverse=True).items()
                      if gid < n_locked}
    if locked_modules:
        freeze_batch_norm_2d(tower, locked_modules)
