"""Reflow's pieces against closed forms: the couples are the dopri5 endpoints of their noise, stored
couples are drawn jointly, and straightness is 0 for a straight flow and the integral of the gap to the
chord for a linear one."""

from __future__ import annotations

import math

import pytest
import torch

from fmexp.flow.ode import integrate
from fmexp.flow.reflow import PairedSource, reflow_pairs, straightness
from tests.closed_forms import Counter


def test_the_pairs_are_the_dopri5_samples_of_their_noise() -> None:
    """dx/dt = a x carries x_0 to e^a x_0; the couples hold exactly what the sample stage's solve gives."""
    a = -0.7
    x_0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = Counter(lambda x, t: a * x)
    pairs = reflow_pairs(v, x_0, rtol=1e-9, atol=1e-9, batch_size=20)
    assert torch.equal(pairs.x_0, x_0)
    torch.testing.assert_close(pairs.x_1, math.exp(a) * x_0, rtol=1e-7, atol=1e-7)
    solves = [integrate(v, x_0[i : i + 20], rtol=1e-9, atol=1e-9) for i in (0, 20, 40)]
    assert torch.equal(pairs.x_1, torch.cat([s.x for s in solves]))  # chunk by chunk, as the sample stage solves
    assert pairs.nfe == sum(s.nfe for s in solves) / 3


def test_stored_couples_are_drawn_together() -> None:
    x_0 = torch.arange(10.0).reshape(10, 1)
    source = PairedSource(x_0, 100 + x_0)
    a, b = source.sample_pairs(64, torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(b, 100 + a) and len(set(a.flatten().tolist())) > 5
    with pytest.raises(ValueError, match="equal shapes"):
        PairedSource(x_0, x_0[:5])


def test_a_straight_flow_has_straightness_zero() -> None:
    """v(x, t) = c moves every point along the line x_0 + t c at constant speed: the gap is 0."""
    c = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    x_0 = torch.randn(8, 2, dtype=torch.float64)
    assert straightness(lambda x, t: c.expand_as(x), x_0, times=32) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("a", [-1.0, 0.5])
def test_straightness_of_a_linear_flow(a: float) -> None:
    """dx/dt = a x: Z_t = e^{at} Z_0, the chord is (e^a - 1) Z_0 and the gap (e^a - 1 - a e^{at}) Z_0, so
    S = E|Z_0|^2 int_0^1 (e^a - 1 - a e^{at})^2 dt = E|Z_0|^2 (a (e^{2a} - 1) / 2 - (e^a - 1)^2)."""
    x_0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = float(x_0.pow(2).sum(1).mean()) * (a * (math.exp(2 * a) - 1) / 2 - (math.exp(a) - 1) ** 2)
    errors = [abs(straightness(lambda x, t: a * x, x_0, times=n, rtol=1e-10, atol=1e-10) - exact) for n in (33, 65)]
    assert errors[1] < 1e-3 * exact
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.05)  # the trapezoid rule's h^2


def test_straightness_takes_at_least_32_times() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        straightness(lambda x, t: x, torch.zeros(1, 2), times=16)
