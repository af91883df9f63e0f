"""Minibatch OT pairing against scipy's assignment solver, an independent reference."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fmexp.flow.couplings import get_coupling
from fmexp.registry import names


def test_minibatch_ot_is_the_optimal_assignment() -> None:
    gen = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(64, 2, generator=gen), torch.randn(64, 2, generator=gen) * 3 + 1
    paired_0, paired_1 = get_coupling("ot")(x_0, x_1)
    assert torch.equal(paired_1, x_1)
    cost = torch.cdist(x_0.double(), x_1.double()).pow(2)
    rows, cols = linear_sum_assignment(cost.numpy())
    optimum = float(cost[rows, cols].sum())
    ours = float((paired_0.double() - x_1.double()).pow(2).sum())
    assert ours == pytest.approx(optimum, rel=1e-9)
    assert sorted(map(tuple, paired_0.tolist())) == sorted(map(tuple, x_0.tolist()))  # a permutation


@pytest.mark.parametrize("name", names("coupling"))
def test_couplings_keep_shapes(name: str) -> None:
    x_0, x_1 = torch.randn(16, 1, 4, 4), torch.randn(16, 1, 4, 4)
    coupling = get_coupling(name)
    a, b = coupling(x_0, x_1, sigma=1.0) if name == "schrodinger_bridge" else coupling(x_0, x_1)
    assert a.shape == b.shape == x_0.shape


def test_unknown_coupling() -> None:
    with pytest.raises(
        ValueError, match=r"coupling: 'sinkhorn' is not one of \['independent', 'ot', 'schrodinger_bridge'\]"
    ):
        get_coupling("sinkhorn")
