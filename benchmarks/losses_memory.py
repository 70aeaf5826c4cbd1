"""Memory of the loss step: CLIP local loss vs full-matrix, chunked vs unchunked SigLIP.

Each configuration runs in a fresh process, on features that already exist, after one warm-up forward + backward
(first calls allocate workspaces and caches that later steps reuse). The figure is what the loss's forward keeps
for its backward: the bytes of the distinct tensors autograd saves (``torch.autograd.graph.saved_tensors_hooks``),
which is the memory a training step holds between forward and backward, independent of the allocator and of RSS;
on CUDA also the growth of ``max_memory_allocated`` over forward + backward.

* CLIP across W gloo processes at global batch B: mmcl's ``clip`` (local rows × gathered columns, B/W × B logits per
  rank) against open_clip's ``ClipLoss(gather_with_grad=True)`` in both its modes: ``local_loss=True`` (the same
  B/W × B scheme, the fair peer) and ``local_loss=False`` (the full B × B matrix on every rank). Reported: the
  largest per-rank figure.
* SigLIP in one process at batch B: mmcl's ``siglip`` with ``chunk_size`` = B (one chunk) and = B/8, and
  ``open_clip.loss.SigLipLoss`` as the peer.

    python benchmarks/losses_memory.py [--batch 8192] [--dim 512] [--world 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip.loss import ClipLoss as OpenClipLoss
from open_clip.loss import SigLipLoss as OpenSigLipLoss

from mmcl.losses import create_loss


class SavedBytes:
    """Bytes of the distinct storages autograd saves for backward while active (a view counts once)."""

    def __init__(self):
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total(self) -> int:
        return sum(self.storages.values())


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
    if kind.startswith("open_clip clip"):
        return OpenClipLoss(local_loss=kind.endswith("local_loss=True"), gather_with_grad=True, rank=rank,
                            world_size=world)(outputs["image"], outputs["text"], outputs["logit_scale"])
    if kind.startswith("mmcl siglip"):
        return create_loss("siglip", chunk_size=chunk)(outputs)["siglip/image-text"]
    if kind == "open_clip siglip":
        return OpenSigLipLoss()(outputs["image"], outputs["text"], outputs["logit_scale"], outputs["logit_bias"])
    raise ValueError(kind)


def _measure(rank: int, kind: str, rows: int, dim: int, world: int, chunk: int, port: int, queue) -> None:
    torch.set_num_threads(1)
    # open_clip gathers with torch.distributed.nn.all_gather, which warns on every call in torch 2.14.
    warnings.filterwarnings("ignore", message="torch.distributed.nn.functional.all_gather is deprecated")
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        outputs = _features(rows, dim, seed=rank)
        _loss(kind, outputs, rank, world, chunk).backward()  # warm-up
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if cuda else 0
        saved = SavedBytes()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
            loss = _loss(kind, outputs, rank, world, chunk)
        loss.backward()
        queue.put((saved.total, torch.cuda.max_memory_allocated() - before if cuda else None))
    finally:
        if world > 1:
            dist.destroy_process_group()


def loss_mib(kind: str, batch: int, dim: int, world: int = 1, chunk: int = 0) -> tuple[float, float | None]:
    """Largest per-process (saved-for-backward MiB, CUDA peak-growth MiB or None) of one loss step at ``batch``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_measure, args=(r, kind, batch // world, dim, world, chunk, port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    figures = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    saved = max(f[0] for f in figures) / 2**20
    return saved, (max(f[1] for f in figures) / 2**20 if figures[0][1] is not None else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--world", type=int, default=4)
    args = parser.parse_args()
    print(f"global batch {args.batch}, dim {args.dim}, {'cuda' if torch.cuda.is_available() else 'cpu'}; "
          "MiB saved for backward per rank (CUDA: and peak growth over forward + backward)")

    def row(label: str, kind: str, world: int = 1, chunk: int = 0) -> float:
        saved, peak = loss_mib(kind, args.batch, args.dim, world, chunk)
        print(f"  {label:<44} {saved:9.1f}" + (f"  (peak +{peak:.1f})" if peak is not None else ""))
        return saved

    print(f"CLIP, {args.world} processes:")
    local = row("mmcl clip (local rows x gathered columns)", "mmcl clip (local)", args.world)
    peer = row("open_clip ClipLoss local_loss=True", "open_clip clip local_loss=True", args.world)
    full = row("open_clip ClipLoss local_loss=False", "open_clip clip local_loss=False", args.world)
    print(f"  mmcl / open_clip local_loss {local / peer:.2f}x; full matrix / mmcl {full / local:.1f}x")
    chunk = args.batch // 8
    print("SigLIP, 1 process:")
    chunked = row(f"mmcl siglip chunk_size={chunk}", "mmcl siglip chunked", chunk=chunk)
    one = row(f"mmcl siglip chunk_size={args.batch} (one chunk)", "mmcl siglip one chunk", chunk=args.batch)
    peer = row("open_clip SigLipLoss", "open_clip siglip")
    print(f"  unchunked / chunked {one / chunked:.1f}x; open_clip / mmcl chunked {peer / chunked:.1f}x")


if __name__ == "__main__":
    main()
