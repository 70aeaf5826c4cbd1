"""benchmarks/contrastive_gap.py: the two inits, the fixed temperature, and the separability probe, on tiny runs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.contrastive_gap import (  # noqa: E402
    COLUMNS,
    FIXED_SCALE,
    TwoTowers,
    linear_separability,
    optimizer_for,
    run,
)


def test_identical_init_copies_the_image_tower_and_independent_does_not():
    torch.manual_seed(0)
    identical = TwoTowers(dim=8, hidden=16, identical_init=True, learned_temperature=False)
    torch.manual_seed(0)
    independent = TwoTowers(dim=8, hidden=16, identical_init=False, learned_temperature=False)
    for a, b, c in zip(identical.image.parameters(), identical.text.parameters(), independent.image.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(a, c)  # the image tower's init does not depend on the init mode
    assert not torch.equal(independent.image[0].weight, independent.text[0].weight)


def test_fixed_temperature_is_not_optimized_and_learned_one_is():
    fixed = TwoTowers(dim=8, hidden=16, identical_init=True, learned_temperature=False)
    learned = TwoTowers(dim=8, hidden=16, identical_init=True, learned_temperature=True)
    fixed_params = {id(p) for group in optimizer_for(fixed).param_groups for p in group["params"]}
    learned_params = {id(p) for group in optimizer_for(learned).param_groups for p in group["params"]}
    assert id(fixed.log_scale) not in fixed_params
    assert id(learned.log_scale) in learned_params
    assert fixed(torch.zeros(1, 64), torch.zeros(1, 64))["logit_scale"].item() == FIXED_SCALE


def test_separability_is_chance_for_one_distribution_and_perfect_for_shifted_ones():
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(512, 8, generator=gen), torch.randn(512, 8, generator=gen)
    assert abs(linear_separability(u, v) - 0.5) < 0.1
    assert linear_separability(u, v + 10) == 1.0


def test_a_short_run_reports_every_column_and_identical_init_starts_closer():
    identical = run("cuaxu", "fixed", "identical", dim=8, hidden=16, steps=3, batch=32)
    independent = run("cuaxu", "fixed", "independent", dim=8, hidden=16, steps=3, batch=32)
    assert set(identical) == set(COLUMNS)
    assert identical["gap0"] < independent["gap0"]
    assert 0.0 <= identical["top1"] <= 1.0
