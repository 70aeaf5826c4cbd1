"""`python -m tests.fsdp_cpu_run CONFIG [overrides]` under torchrun: the pretraining recipe with Accelerate's FSDP2
path forced onto CPU (gloo) processes.

Accelerate turns FSDP on only for GPU backends, while torch's `fully_shard` itself runs on CPU; forcing the
distributed type lets the tests drive our recipe through Accelerate's real FSDP preparation, gradient-sync
control, state-dict gathering and sharded checkpoints on this machine.
"""

from __future__ import annotations

import sys

from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType

from mmcl.training import fsdp
from pipelines import pretrain


class CpuFsdpAccelerator(Accelerator):
    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        super().__init__(*args, **kwargs)
        if fsdp_plugin is not None:
            # Both shared states: each new AcceleratorState() copies the distributed type from PartialState.
            self.state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.state.fsdp_plugin = fsdp_plugin


class CpuFsdpRecipe(pretrain.PretrainRecipe):
    def build_accelerator(self, model):
        cfg = self.cfg
        return CpuFsdpAccelerator(mixed_precision=pretrain.PRECISION[cfg.train.precision], cpu=True,
                                  log_with=cfg.train.trackers or None, project_dir=cfg.train.output_dir,
                                  fsdp_plugin=fsdp.build_plugin(cfg.train.fsdp, model))


if __name__ == "__main__":
    from pipelines.cli import configure_logging, run_guarded

    fsdp.require_gpu = lambda: None
    configure_logging()
    sys.exit(run_guarded(lambda: pretrain.main(recipe_class=CpuFsdpRecipe)))
