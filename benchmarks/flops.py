"""FLOPs and peaks for model FLOP utilisation (MFU): what one training step of an mmcl model costs per sample,
what this machine's matrix units can do at best (measured), and NVIDIA cards' datasheet bf16 peaks.

    python benchmarks/flops.py [--model tiny] [--batch-size 8]     # prints FLOPs/sample and this machine's peak

MFU = samples/s × model_flops_per_sample / peak.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from typing import Callable
from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mmcl.models.summary  # noqa: E402,F401  (registers torch's SDPA formula for the CPU attention kernel)
from mmcl.losses.objective import LossTermConfig, Objective  # noqa: E402

# mmcl.models.summary counts only forwards; a training step also runs the CPU attention kernel's backward, which
# does the same work as the CUDA kernels' backward that torch counts, so it gets their formula.
_CPU_SDPA_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
if _CPU_SDPA_BACKWARD not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(_CPU_SDPA_BACKWARD, get_raw=True)(flop_counter.sdpa_backward_flop)

# Dense (no 2:4 sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets, whose headline figures are
# with sparsity: halved here. Matched in order against torch.cuda.get_device_name(), so a longer name comes
# before any name it contains (GB200 before B200, GH200 and H200 NVL before H200, L40S before L40 before L4, A100 before A10).
BF16_PEAK_FLOPS = [
    ("GB200", 2.5e15),     # GB200 NVL72 datasheet: 5 PFLOPS bf16 per GPU with sparsity
    ("B200", 2.25e15),     # HGX B200 datasheet: 4.5 PFLOPS bf16 per GPU with sparsity
    ("GH200", 989e12),     # GH200 datasheet: 1,979 TFLOPS with sparsity
    ("H200 NVL", 835e12),  # H200 datasheet (NVL column): 1,671 TFLOPS with sparsity
    ("H200", 989e12),      # H200 datasheet (SXM column): 1,979 TFLOPS with sparsity
    ("H100 NVL", 835e12),  # H100 datasheet (NVL column): 1,671 TFLOPS with sparsity
    ("H100 PCIe", 756e12),  # H100 datasheet (PCIe column): 1,513 TFLOPS with sparsity
    ("H100", 989e12),      # H100 datasheet (SXM column, device name "H100 80GB HBM3"): 1,979 TFLOPS with sparsity
    ("A100", 312e12),      # A100 datasheet (SXM and PCIe alike): 624 TFLOPS with sparsity
    ("L40S", 362e12),      # L40S datasheet: 733 TFLOPS with sparsity (362.05 dense)
    ("L40", 181e12),       # L40 datasheet: 362 TFLOPS with sparsity
    ("L4", 121e12),        # L4 datasheet: 242 TFLOPS with sparsity
    ("A10G", 70e12),       # AWS's A10 variant has no NVIDIA datasheet; 70 TFLOPS dense as compared by Baseten,
                           # https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/
    ("A10", 125e12),       # A10 datasheet: 250 TFLOPS with sparsity
    ("A6000", 154.8e12),   # RTX A6000 datasheet: 309.7 TFLOPS with sparsity
    ("RTX 4090", 165.2e12),  # Ada whitepaper: bf16 with fp32 accumulate (what PyTorch uses), 330.3 with sparsity
    ("RTX 3090", 71e12),   # Ampere GA102 whitepaper: bf16 with fp32 accumulate, 142 with sparsity
]


@contextmanager
def _training(model: torch.nn.Module):
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)


def step_flops(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> int:
    """FLOPs (multiply-add = 2, as torch counts) of `loss()` (a forward of `model` and a loss) and its backward,
    with the model in training mode, so that what training skips (patch dropout) is skipped here too. The
    model's gradients are cleared afterwards."""
    with _training(model), FlopCounterMode(display=False) as counter:
        loss().backward()
    return counter.get_total_flops()


def model_flops_per_sample(model: torch.nn.Module, example_batch: dict, objective: torch.nn.Module | None = None) -> float:
    """FLOPs of one training step of an mmcl model, forward + loss + backward, divided by the batch's rows.
    `objective` defaults to the CLIP loss."""
    objective = objective if objective is not None else Objective([LossTermConfig(name="clip")])
    rows = next(v.shape[0] for v in example_batch.values() if isinstance(v, torch.Tensor))
    return step_flops(model, lambda: objective(model(example_batch), example_batch)[0]) / rows


def measured_matmul_peak(device: str | torch.device, dtype: torch.dtype, threads: int | None = None,
                         size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` square matrix products: what this machine's matrix units reach in
    practice, the ceiling a training step could approach. `threads` sets torch's CPU threads for the measurement."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)  # long enough to time, short enough on 2 cores
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        best = float("inf")
        for _ in range(repeats + 1):  # the first product warms up (kernel choice, caches), and counts like the rest
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give the matrices' memory back to the GPU, for the training runs after this
    return 2 * size**3 / best


def card_bf16_peak(device_name: str) -> float | None:
    """The datasheet dense bf16 peak of the NVIDIA card whose name contains a table entry, else None."""
    return next((peak for key, peak in BF16_PEAK_FLOPS if key in device_name), None)


def gpu_bf16_peak(device: int = 0) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): the datasheet figure for a known card, else a measured bf16 matmul."""
    name = torch.cuda.get_device_name(device)
    peak = card_bf16_peak(name)
    if peak is not None:
        return peak, f"datasheet dense bf16 for {name}"
    return measured_matmul_peak(f"cuda:{device}", torch.bfloat16), f"measured bf16 matmul on {name} (not in table)"


def main() -> None:
    from mmcl.models import create_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    model, _, _ = create_model(args.model)
    batch = {m: tower.example_input(args.batch_size) for m, tower in model.towers.items()}
    print(f"{args.model}: {model_flops_per_sample(model, batch) / 1e9:.3f} GFLOPs per sample per training step")
    print(f"this CPU: {measured_matmul_peak('cpu', torch.float32) / 1e9:.1f} GFLOP/s fp32 matmul peak (measured)")
    if torch.cuda.is_available():
        peak, source = gpu_bf16_peak()
        print(f"GPU: {peak / 1e12:.1f} TFLOP/s ({source})")


if __name__ == "__main__":
    main()
