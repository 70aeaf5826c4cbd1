"""`python -m tests.nonfinite_rank_run CONFIG [overrides]` under torchrun: the pretraining recipe with the loss NaN
on the last process only, at every step; the others see finite losses."""

from __future__ import annotations

import sys

import torch

from mmcl.losses.objective import Objective
from pipelines import pretrain


class LastRankNaN(Objective):
    def forward(self, outputs, batch=None):
        total, terms = super().forward(outputs, batch)
        if torch.distributed.get_rank() == torch.distributed.get_world_size() - 1:
            terms = {name: value * float("nan") for name, value in terms.items()}
            total = sum(terms.values())
        return total, terms


class LastRankNaNRecipe(pretrain.PretrainRecipe):
    def build_objective(self):
        return LastRankNaN(self.cfg.loss)


if __name__ == "__main__":
    from pipelines.cli import configure_logging, run_guarded

    configure_logging()
    sys.exit(run_guarded(lambda: pretrain.main(recipe_class=LastRankNaNRecipe)))
