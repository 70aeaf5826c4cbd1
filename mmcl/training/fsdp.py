"""Fully sharded data parallel (FSDP2) through Accelerate's plugin, configured from `train.fsdp`.

Each process then holds 1/N of the parameters, gradients and optimiser state, gathering one block's parameters
at a time for its forward and backward. The shard units are the towers' repeated blocks (transformer layers, CNN
stages), found in the model itself so that every tower kind is covered without a per-model list.
"""

from __future__ import annotations

from contextlib import contextmanager

from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
import torch
from torch import nn

from mmcl.errors import UserError
from mmcl.training.config import FsdpConfig


def repeated_block_classes(model: nn.Module) -> list[str]:
    """Class names of the blocks a model repeats: children of a ModuleList/Sequential that share one class and
    themselves contain parameterised submodules (so an MLP's Linear layers are not units, its transformer block is).
    Blocks nested inside an already found block are not listed: one level of units is enough."""
    found: set[str] = set()

    def visit(module: nn.Module) -> None:
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            children = list(module.children())
            classes = {type(child) for child in children}
            if len(children) >= 2 and len(classes) == 1 and _is_composite(children[0]):
                found.add(type(children[0]).__name__)
                return
        for child in module.children():
            visit(child)

    visit(model)
    return sorted(found)


def _is_composite(module: nn.Module) -> bool:
    return any(any(True for _ in child.parameters()) for child in module.children())


def build_plugin(cfg: FsdpConfig, model: nn.Module) -> FullyShardedDataParallelPlugin:
    """Accelerate's FSDP2 plugin for this model; mixed precision is set by Accelerate from `train.precision`."""
    wrap = cfg.wrap if cfg.wrap is not None else repeated_block_classes(model)
    present = {type(m).__name__ for m in model.modules()}
    unknown = [name for name in wrap if name not in present]
    if unknown:
        raise UserError(f"train.fsdp.wrap: no module of class {unknown} in the model "
                        f"(its repeated blocks are {repeated_block_classes(model)})")
    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=cfg.reshard_after_forward,
        cpu_offload=cfg.cpu_offload,
        state_dict_type="SHARDED_STATE_DICT" if cfg.state_dict == "sharded" else "FULL_STATE_DICT",
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=wrap,
    )


def require_gpu() -> None:
    """Refuse FSDP on a machine without CUDA, before any process starts: Accelerate would train unsharded."""
    if not torch.cuda.is_available():
        raise UserError("train.fsdp is set but there is no GPU: Accelerate shards with FSDP only on GPU (and other "
                        "accelerator) backends and would run these CPU processes unsharded (DDP); remove train.fsdp "
                        "to train with DDP here")


def check_enabled(distributed_type: DistributedType, num_processes: int) -> None:
    """Refuse a run where Accelerate did not turn FSDP on, rather than silently train without sharding."""
    if distributed_type == DistributedType.FSDP:
        return
    if num_processes == 1:
        raise UserError("train.fsdp is set but this run has one process: FSDP shards across processes; launch "
                        "several (--num-processes, accelerate launch, torchrun) or remove train.fsdp")
    raise UserError(f"train.fsdp is set but Accelerate runs these processes as {distributed_type.value}, "
                    "unsharded; check the launcher's FSDP and device settings, or remove train.fsdp")


@contextmanager
def root_gathered(model: nn.Module):
    """The root unit's parameters (embeddings, projections, temperature) gathered on every process, for calls that
    enter the model below its forward, such as evaluation's `encode`: the blocks still gather their own."""
    model.unshard()
    try:
        yield
    finally:
        model.reshard()
