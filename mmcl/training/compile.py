"""`train.compile`: torch.compile of each tower, in place.

`nn.Module.compile` keeps the module and its parameter names (torch.compile(module) would wrap it and prefix every
key with `_orig_mod.`), so checkpoints written with and without compiling load into each other, and DDP, the
optimiser and locking see the same parameters. The model's own forward (normalising, the temperature) stays eager:
it is a few element-wise operations.
"""

from __future__ import annotations

from mmcl.models import MultimodalModel


def compile_towers(model: MultimodalModel, mode: str) -> None:
    for tower in model.towers.values():
        tower.compile(mode=mode)
