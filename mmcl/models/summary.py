"""Parameters and forward FLOPs per tower, for `mmcl models show`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from mmcl.models.multimodal import MultimodalModel

# torch counts the CUDA attention kernels but not the CPU one, which timm and open_clip reach through
# scaled_dot_product_attention; it does the same work, so it gets the same formula.
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_SDPA not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(_CPU_SDPA, get_raw=True)(flop_counter.sdpa_flop)


@dataclass
class TowerSummary:
    modality: str
    kind: str
    input_shape: tuple[int, ...]
    params: int
    trainable: int
    flops: int  # forward FLOPs for one sample, multiply-add counted as 2 (torch's FlopCounterMode)


def summarize(model: MultimodalModel) -> list[TowerSummary]:
    rows = []
    for modality, tower in model.towers.items():
        example = tower.example_input(1)
        was_training, fastpath = tower.training, torch.backends.mha.get_fastpath_enabled()
        # nn.MultiheadAttention's inference fast path is one fused op that the counter cannot see.
        torch.backends.mha.set_fastpath_enabled(False)
        tower.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                tower(example)
        finally:
            tower.train(was_training)
            torch.backends.mha.set_fastpath_enabled(fastpath)
        rows.append(TowerSummary(
            modality, model.config.towers[modality].type, tuple(example.shape[1:]),
            sum(p.numel() for p in tower.parameters()),
            sum(p.numel() for p in tower.parameters() if p.requires_grad),
            counter.get_total_flops(),
        ))
    return rows


def format_summary(rows: list[TowerSummary]) -> str:
    lines = [f"{'tower':8s} {'kind':16s} {'input':>16s} {'params':>14s} {'trainable':>14s} {'GFLOPs/sample':>14s}"]
    for r in rows:
        shape = "x".join(map(str, r.input_shape))
        lines.append(f"{r.modality:8s} {r.kind:16s} {shape:>16s} {r.params:>14,} {r.trainable:>14,} {r.flops / 1e9:>14.3f}")
    total_params, total_flops = sum(r.params for r in rows), sum(r.flops for r in rows)
    lines.append(f"{'total':8s} {'':16s} {'':>16s} {total_params:>14,} {sum(r.trainable for r in rows):>14,} "
                 f"{total_flops / 1e9:>14.3f}")
    return "\n".join(lines)
