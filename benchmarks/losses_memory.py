"""Peak memory of the loss step: CLIP local loss vs full-matrix, chunked vs unchunked SigLIP.

Each configuration runs in a fresh process; the figure is the growth of peak memory over forward + backward of the
loss alone, on features that already exist (CUDA: ``max_memory_allocated``; CPU: peak RSS from ``getrusage``).

* CLIP across W gloo processes at global batch B: mmcl's ``clip`` (local rows × gathered columns, B/W × B logits per
  rank) against ``open_clip.loss.ClipLoss(local_loss=False, gather_with_grad=True)``, which builds the full B × B
  matrix on every rank. Reported: the largest per-rank peak.
* SigLIP in one process at batch B: mmcl's ``siglip`` with ``chunk_size`` = B (one chunk) and = B/8, and
  ``open_clip.loss.SigLipLoss`` as the peer.

    python benchmarks/losses_memory.py [--batch 8192] [--dim 512] [--world 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from mmcl.losses import create_loss


def _peak_bytes() -> int:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _features(rows: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(seed)
    out = {m: F.normalize(torch.randn(rows, dim, device=device, generator=gen), dim=-1).requires_grad_(True)
           for m in ("image", "text")}
    out["logit_scale"] = torch.tensor(10.0, device=device, requires_grad=True)
    out["logit_bias"] = torch.tensor(-10.0, device=device, requires_grad=True)
    return out


def _loss(kind: str, outputs: dict[str, torch.Tensor], rank: int, world: int, chunk: int) -> torch.Tensor:
    if kind == "mmcl clip (local)":
        return create_loss("clip")(outputs)["clip/image-text"]
    if kind == "open_clip full matrix":
        return OpenClipLoss(gather_with_grad=True, rank=rank, world_size=world)(
            outputs["image"], outputs["text"], outputs["logit_scale"])
    if kind.startswith("mmcl siglip"):
        return create_loss("siglip", chunk_size=chunk)(outputs)["siglip/image-text"]
    if kind == "open_clip siglip":
        return OpenSigLipLoss()(outputs["image"], outputs["text"], outputs["logit_scale"], outputs["logit_bias"])
    raise ValueError(kind)


def _measure(rank: int, kind: str, rows: int, dim: int, world: int, chunk: int, port: int, queue) -> None:
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        outputs = _features(rows, dim, seed=rank)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        before = _peak_bytes()
        _loss(kind, outputs, rank, world, chunk).backward()
        queue.put(_peak_bytes() - before)
    finally:
        if world > 1:
            dist.destroy_process_group()


def peak_mib(kind: str, batch: int, dim: int, world: int = 1, chunk: int = 0) -> float:
    """Largest per-process growth of peak memory (MiB) for one loss step at global ``batch``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_measure, args=(r, kind, batch // world, dim, world, chunk, port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    peaks = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(peaks) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--world", type=int, default=4)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu (peak RSS)"
    print(f"global batch {args.batch}, dim {args.dim}, device {device}")
    local = peak_mib("mmcl clip (local)", args.batch, args.dim, args.world)
    full = peak_mib("open_clip full matrix", args.batch, args.dim, args.world)
    print(f"CLIP, {args.world} processes, per-rank peak: mmcl local {local:.0f} MiB, full matrix {full:.0f} MiB "
          f"(ratio {full / local:.1f}x)")
    chunk = args.batch // 8
    one = peak_mib("mmcl siglip one chunk", args.batch, args.dim, chunk=args.batch)
    chunked = peak_mib("mmcl siglip chunked", args.batch, args.dim, chunk=chunk)
    peer = peak_mib("open_clip siglip", args.batch, args.dim)
    print(f"SigLIP, 1 process: mmcl chunk={chunk} {chunked:.0f} MiB, mmcl unchunked {one:.0f} MiB, "
          f"open_clip {peer:.0f} MiB (unchunked/chunked {one / chunked:.1f}x)")


if __name__ == "__main__":
    main()
