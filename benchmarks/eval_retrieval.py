"""Retrieval metrics at scale: time and peak memory of `paired_retrieval` on N items with C captions each.

Scores are built in row chunks (about 16M floats at a time), so peak memory stays near the embeddings plus
one chunk whatever N is; a full N x NC score matrix at N = 100k, C = 1 would need 40 GB in float32.

    python benchmarks/eval_retrieval.py --items 100000 --captions 1 --dim 512
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from mmcl.eval.retrieval import paired_retrieval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--captions", type=int, default=1, help="Captions per item.")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    items = F.normalize(torch.randn(args.items, args.dim, generator=g), dim=1)
    owner = torch.arange(args.items).repeat_interleave(args.captions)
    # Captions near their item, so ranks are spread rather than all first or all random.
    texts = F.normalize(items[owner] + 3.0 * torch.randn(len(owner), args.dim, generator=g) / args.dim ** 0.5, dim=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    metrics = paired_retrieval(items, texts, owner, ("image", "text"))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = args.items * len(owner) * 4 / 2**30
    print(f"{args.items} items x {args.captions} caption(s), dim {args.dim}, {torch.get_num_threads()} thread(s): "
          f"{seconds:.1f} s for both directions")
    print(f"peak RSS {peak:.0f} MB (embeddings in place: {before:.0f} MB); a full score matrix would be {full:.1f} GB")
    for direction, m in metrics.items():
        print(f"{direction}: R@1 {m['recall@1']:.4f} R@5 {m['recall@5']:.4f} R@10 {m['recall@10']:.4f} "
              f"mean rank {m['mean_rank']:.1f} median rank {m['median_rank']:.1f}")


if __name__ == "__main__":
    main()
