"""Cost of `mmcl audit`'s scoring at CLIP ViT-B/32's embedding width (512): time and peak memory for N samples,
with every sample as a reference (time O(N²·d)) and with a 10,000-sample reference set (O(N·M·d)).

    python benchmarks/audit_scale.py [--sizes 20000 50000] [--threads 2]

Random unit embeddings stand in for a model's (the cost does not depend on their values); embedding the samples
is the model's forward pass, measured by the throughput benchmarks, and is not included.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from mmcl.audit import reference_sample, suspicion_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| samples | references | seconds | peak RSS (GiB) |\n|---|---|---|---|")
    for n in args.sizes:
        generator = torch.Generator().manual_seed(0)
        media, text = (F.normalize(torch.randn(n, args.dim, generator=generator), dim=1) for _ in range(2))
        for references in (None, args.references):
            started = time.perf_counter()
            scores = suspicion_scores(media, text, "image", 10, reference_sample(n, references), 4096)
            seconds = time.perf_counter() - started
            assert all(torch.isfinite(v).all() for v in scores.values())
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"| {n} | {'all' if references is None else references} | {seconds:.1f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
