"""Time grids of fixed-step solves: EDM's grid against flow_matching's and against its own formula in
lambda, the inversion of each path's noise-to-signal ratio, and solves that run on the grid given."""

from __future__ import annotations

import pytest
import torch

from fmexp.flow.grids import edm, noise_to_signal, time_of, uniform
from fmexp.flow.ode import Rung, integrate
from fmexp.flow.paths import get_path
from tests.closed_forms import Counter, make_path


def flow_matching_edm_grid(nfes: int, rho: float = 7.0) -> torch.Tensor:
    """flow_matching's ``examples/image/training/edm_time_discretization.get_time_discretization``
    (facebookresearch/flow_matching, the CIFAR-10 heun2 sampler's grid), restated: EDM's sigmas from 80
    to 0.002, then 0, as t = 1 - sigma / (1 + sigma) on the OT path."""
    i = torch.arange(nfes, dtype=torch.float64)
    sigma = (80.0 ** (1 / rho) + i / (nfes - 1) * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
    sigma = torch.cat([sigma, torch.zeros(1, dtype=torch.float64)])
    return 1.0 - torch.clip(sigma / (1 + sigma), 0.0, 1.0)


@pytest.mark.parametrize("steps", [2, 4, 8, 50])
def test_edm_grid_on_ot_is_flow_matchings(steps: int) -> None:
    """On OT (sigma_min = 0, t = 1 / (1 + lambda)) the grid is flow_matching's but for its first time:
    it starts at the source (0) where theirs starts at t(80) = 1/81."""
    ours, theirs = edm(get_path("ot", sigma_min=0.0), steps), flow_matching_edm_grid(steps)
    assert ours.shape == theirs.shape == (steps + 1,)
    torch.testing.assert_close(ours[1:], theirs[1:], rtol=1e-12, atol=1e-12)
    assert float(ours[0]) == 0.0 and abs(float(theirs[0]) - 1 / 81) < 1e-15


def test_edm_grid_within_the_path_range_is_the_formula() -> None:
    """VE with sigma_max = 8 and sigma_min = 0.05 (a_t = 1, so lambda_t = sigma_t) lies inside [0.002, 80]:
    its steps + 1 times carry lambda from 8 to 0.05 by EDM's formula, with no end clipped."""
    path, steps, rho = make_path("ve"), 6, 7.0
    i = torch.arange(steps + 1, dtype=torch.float64)
    expected = (8.0 ** (1 / rho) + i / steps * (0.05 ** (1 / rho) - 8.0 ** (1 / rho))) ** rho
    grid = edm(path, steps)
    torch.testing.assert_close(noise_to_signal(path, grid), expected, rtol=1e-10, atol=0.0)


def test_time_of_inverts_each_paths_ratio(path_name: str) -> None:
    """t -> lambda_t -> t, on every Gaussian path (the user's too)."""
    path = make_path(path_name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(time_of(path, noise_to_signal(path, t)), t, rtol=0.0, atol=1e-9)


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 16])
def test_every_grid_runs_from_0_to_1_in_order(path_name: str, steps: int) -> None:
    for grid in (uniform(None, steps), edm(make_path(path_name), steps)):
        assert grid.shape == (steps + 1,) and float(grid[0]) == 0.0 and float(grid[-1]) == 1.0
        assert bool((grid.diff() > 0).all()), grid


def test_edm_crowds_the_steps_at_both_ends() -> None:
    """On OT, t = 1 / (1 + lambda) moves least per step of lambda^(1/7) where lambda is large or small: the
    steps near t = 0 and t = 1 are shorter than those in the middle, the last (lambda from 0.002 to 0)
    the shortest, about 0.002."""
    steps = edm(get_path("ot", sigma_min=0.0), 16).diff()
    middle = float(steps.max())
    assert float(steps[1]) < middle / 10 and float(steps[-1]) < middle / 50
    assert abs(float(steps[-1]) - 0.002 / 1.002) < 1e-12 and float(steps[-1]) == float(steps.min())


def test_a_bridge_has_no_edm_grid() -> None:
    with pytest.raises(ValueError, match="noise-to-signal"):
        edm(get_path("bridge", sigma=0.1), 4)


def test_a_solve_steps_on_the_grid_given() -> None:
    """Euler on dx/dt = 2t sums 2 t_i (t_{i+1} - t_i) over the grid: a left Riemann sum of the grid's own
    times, so a solve that ignored the grid would give the uniform grid's sum."""
    grid = edm(get_path("ot"), 8)
    v = Counter(lambda x, t: 2 * t[:, None] * torch.ones_like(x))
    res = integrate(v, torch.zeros(3, 1, dtype=torch.float64), method="euler", steps=8, grid=grid)
    expected = float((2 * grid[:-1] * grid.diff()).sum())
    torch.testing.assert_close(res.x, torch.full((3, 1), expected, dtype=torch.float64), rtol=1e-12, atol=0.0)
    assert res.nfe == v.calls == 8
    assert abs(expected - float((2 * uniform(None, 8)[:-1] / 8).sum())) > 0.05


def test_a_grid_of_the_wrong_length_or_ends_is_refused() -> None:
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="holds 5 times"):
        integrate(lambda x, t: x, x, method="euler", steps=4, grid=uniform(None, 3))
    with pytest.raises(ValueError, match="holds 5 times"):
        integrate(lambda x, t: x, x, method="euler", steps=4, grid=uniform(None, 4) * 0.5)


@pytest.mark.parametrize("key", ["euler:4", "heun2@edm:8", "rk4@uniform:2"])
def test_rung_keys_read_back(key: str) -> None:
    rung = Rung.parse(key)
    assert Rung.parse(rung.key) == rung
    assert rung.key == key.replace("@uniform", "")
