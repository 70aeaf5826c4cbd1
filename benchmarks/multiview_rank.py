"""Effective rank of multi-view embeddings as views are added: MV-InfoNCE vs MV-DHEL vs pairwise CLIP.

Koromilas et al. 2025 ("A Principled Framework for Multi-View Contrastive Learning", arXiv 2507.06979) claim that
MV-DHEL, which decouples each view's uniformity from the alignment of all views, benefits from more views and, with
five or more, mitigates dimensionality collapse (uses more of the embedding space), where summing pairwise losses
does not. Their views are augmentations of one image through one shared encoder; here each view is its own modality.

Synthetic data: a shared latent z ~ N(0, I_48) is seen by V sensors, view v as act_v(z W_v) + noise with its own
fixed random map W_v, nonlinearity (tanh, sin, softsign in turn) and noise; each view has its own MLP tower onto the
unit sphere. ``mv_infonce``, ``mv_dhel`` and ``pairwise`` (CLIP summed over all V(V−1)/2 view pairs) train the same
towers on the same instance stream, at a fixed temperature, for the same steps and batch whatever V. On a fixed
held-out set of 1000 instances we report the effective rank (Roy & Vetterli 2007: exp of the entropy of the
normalised singular values of the centred embeddings, :func:`mmcl.eval.geometry.effective_rank`; at most the
embedding width, 64) of each view's embeddings, averaged over the views, and top-1 retrieval view 0 → view 1 within
those 1000, so that rank is not read alone. Mean ± sd over seeds.

Defaults: sensor input 64, noise 0.7, towers 64 → 128 → 64, τ = 0.1 fixed, batch 128, 300 Adam steps (lr 1e-3),
views 2 3 4 6, seeds 0 1 2: 2.2–2.6 min wall (1.9–2.2 min CPU) on one thread of a shared 2-core machine. The budget
is fixed, not run to convergence: with 6 views, seed 0, MV-DHEL's top-1 rose from 0.06 at 300 steps to 0.17 at 1200.

    python benchmarks/multiview_rank.py [--views 2 3 4 6] [--seeds 0 1 2] [--steps 300] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmcl.eval.geometry import effective_rank
from mmcl.eval.retrieval import ranks
from mmcl.losses import create_loss

# Noisy enough that top-1 among 1000 held-out instances stays near 0.2: far from solved, so losses can differ.
LATENT, INPUT, NOISE = 48, 64, 0.7
HIDDEN, DIM = 128, 64  # CLIP-style losses fill about 47 of the 64 dims: room for a loss that spreads more
TAU = 0.1  # fixed, not learned: a learned temperature would settle differently per loss and confound the comparison
GALLERY = 1000
PAPER = (
    'Claim (Koromilas et al., arXiv 2507.06979, abstract): "ablation studies reveal that MV-DHEL with five or more '
    'views effectively mitigates dimensionality collapse by fully utilizing the embedding space"; no effective-rank '
    "numbers were found in the sources searched.\n"
    'Official code README (github.com/pakoromilas/Multi-View-CL), "Key Results" accuracy %, 2 → 4 views, best '
    "baseline vs MV-DHEL: CIFAR-10 86.0→88.7 vs 87.4→89.5, CIFAR-100 58.1→61.1 vs 59.4→62.7, "
    "ImageNet-100 72.2→75.0 vs 73.3→77.2, ImageNet-1K 60.0→62.4 vs 61.2→62.6."
)
SENSOR_NONLINEARITIES = (torch.tanh, torch.sin, F.softsign)  # view v uses entry v mod 3


def generator(seed: int, purpose: int) -> torch.Generator:
    """The seed's random stream for one purpose (0 sensor maps, 1 training instances, 2 held-out gallery); the
    streams of different seeds and purposes never coincide."""
    return torch.Generator().manual_seed(3 * seed + purpose)


def view_names(count: int) -> list[str]:
    return [f"view{v}" for v in range(count)]


class Sensors:
    """``views`` noisy nonlinear sensors of one latent: view v sees act_v(z W_v) + noise, W_v fixed per seed."""

    def __init__(self, views: int, seed: int):
        gen = generator(seed, 0)
        self.names = view_names(views)
        self.maps = [torch.randn(LATENT, INPUT, generator=gen) / LATENT**0.5 for _ in self.names]

    def sample(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        z = torch.randn(n, LATENT, generator=gen)
        return {
            name: SENSOR_NONLINEARITIES[v % len(SENSOR_NONLINEARITIES)](z @ w)
            + NOISE * torch.randn(n, INPUT, generator=gen)
            for v, (name, w) in enumerate(zip(self.names, self.maps))
        }


class Towers(nn.Module):
    """One MLP per view onto the unit sphere; the logit scale is the fixed 1/τ."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self.towers = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(INPUT, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, DIM)) for m in names}
        )

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = {m: F.normalize(tower(inputs[m]), dim=-1) for m, tower in self.towers.items()}
        outputs["logit_scale"] = torch.tensor(1 / TAU)
        return outputs


OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    # Momentum SGD, as SimCLR-style training uses (or its layer-wise form LARS); lr set once, not tuned per loss.
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
}


def train(loss_fn: nn.Module, sensors: Sensors, seed: int, batch: int, steps: int,
          optimizer_name: str = "adam") -> Towers:
    """Towers trained for ``steps`` steps on fresh batches of the seed's instance stream."""
    torch.manual_seed(seed)
    towers = Towers(sensors.names)
    stream = generator(seed, 1)
    optimizer = OPTIMIZERS[optimizer_name](towers.parameters())
    for _ in range(steps):
        loss = sum(loss_fn(towers(sensors.sample(batch, stream))).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return towers


def held_out(sensors: Sensors, seed: int) -> dict[str, torch.Tensor]:
    """The seed's gallery of held-out instances: the same for every loss and batch size."""
    return sensors.sample(GALLERY, generator(seed, 2))


def top1(queries: torch.Tensor, gallery: torch.Tensor) -> float:
    """Share of queries whose own row of ``gallery`` scores strictly highest (ties count as misses)."""
    own = torch.arange(queries.shape[0])[:, None]
    return (ranks(queries, gallery, own) == 1).float().mean().item()


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """"mean ± sample sd" (sd 0 for a single value)."""
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values) if len(values) > 1 else 0:.{digits}f}"


def run(loss_name: str, views: int, seed: int, steps: int, batch: int) -> tuple[float, float]:
    """(mean effective rank over views, top-1 view0 → view1) on held-out instances after training."""
    sensors = Sensors(views, seed)
    towers = train(create_loss(loss_name, modalities=sensors.names), sensors, seed, batch, steps)
    with torch.no_grad():
        out = towers(held_out(sensors, seed))
    rank = statistics.mean(effective_rank(out[m]) for m in sensors.names)
    return rank, top1(out["view0"], out["view1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 3, 4, 6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small matrices: extra threads only add contention
    print(f"τ={TAU} batch={args.batch} steps={args.steps} dim={DIM} gallery={GALLERY} seeds={args.seeds}")
    print(f"{'loss':11s} {'views':>5s} {'effective rank':>15s} {'top-1 v0→v1':>15s}")
    for name in ("pairwise", "mv_infonce", "mv_dhel"):
        for views in args.views:
            rank, hits = zip(*(run(name, views, s, args.steps, args.batch) for s in args.seeds))
            print(f"{name:11s} {views:5d} {mean_sd(rank, 2):>15s} {mean_sd(hits):>15s}", flush=True)
    print(PAPER)


if __name__ == "__main__":
    main()
