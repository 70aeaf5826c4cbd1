"""Small version of Symile's XOR experiment: pairwise CLIP stays near chance, Symile learns the three-way relation."""

import pytest

from benchmarks.symile_xor import run
from tests.losses_helpers import one_thread  # noqa: F401  (fixture, used through pytestmark)

pytestmark = pytest.mark.usefixtures("one_thread")

BITS = 4  # chance = 1/16


def test_symile_learns_xor_pairwise_clip_cannot():
    # Seed 0 (run's default); holds on seeds 0-9: symile 1.000 on all, pairwise 0.062-0.100 (chance 0.0625).
    symile = run("symile", bits=BITS, steps=150, batch=64, test_size=500)
    pairwise = run("pairwise", bits=BITS, steps=150, batch=64, test_size=500)
    assert symile > 0.9, symile
    assert pairwise < 0.2, pairwise
