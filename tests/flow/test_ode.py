"""integrate() against closed-form flows, with NFE counted by the test itself."""

from __future__ import annotations

import math

import pytest
import torch

from fmexp.flow.ode import get_solver, integrate
from fmexp.registry import names
from tests.closed_forms import Counter, GaussianMarginal, make_path

A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64)  # non-symmetric: a damped rotation


def linear(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x @ A.T


# Global error of a fixed-step method of order p at h = 1/200 is O(h^p).
FIXED_TOLERANCE = {"euler": 1e-2, "midpoint": 1e-4, "heun2": 1e-4, "heun3": 1e-6, "rk4": 1e-8}


@pytest.mark.parametrize("method", names("adaptive_solver", "fixed_solver"))
def test_linear_field_matches_matrix_exponential(method: str) -> None:
    """x(1) = expm(A) x(0); adaptive methods converge as the tolerance tightens, fixed ones at their order."""
    x_0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = x_0 @ torch.linalg.matrix_exp(A).T
    if get_solver(method).adaptive:
        errors = []
        for tol in (1e-5, 1e-9):
            v = Counter(linear)
            res = integrate(v, x_0, method=method, rtol=tol, atol=tol)
            assert res.nfe == v.calls
            errors.append(float((res.x - exact).abs().max()))
        assert errors[1] < errors[0] / 10 and errors[1] < 1e-5, errors
    else:
        v = Counter(linear)
        res = integrate(v, x_0, method=method, steps=200)
        assert res.nfe == v.calls == 200 * get_solver(method).evals_per_step
        tol = FIXED_TOLERANCE[method]
        torch.testing.assert_close(res.x, exact, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", names("adaptive_solver", "fixed_solver"))
def test_gaussian_marginal_field_carries_source_to_data(path_name: str, method: str) -> None:
    """The exact marginal field of data N(m, s^2 I) maps x(0) to x(1) = M_1 + (S_1/S_0)(x(0) - M_0)."""
    marginal = GaussianMarginal(make_path(path_name), m=torch.tensor([1.5, -0.5], dtype=torch.float64), s=0.7)
    gen = torch.Generator().manual_seed(1)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    (m0, s0), (m1, s1) = marginal.mean_std(zero), marginal.mean_std(one)
    x_0 = m0 + s0 * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    kwargs = (
        {"rtol": 1e-7, "atol": 1e-7} if get_solver(method).adaptive else {"steps": 400 if method == "euler" else 100}
    )
    res = integrate(marginal.field, x_0, method=method, **kwargs)
    expected = m1 + s1 / s0 * (x_0 - m0)
    tol = {"euler": 5e-2, "midpoint": 2e-3, "heun2": 2e-3}.get(method, 1e-4)  # second order: as midpoint
    torch.testing.assert_close(res.x, expected, rtol=tol, atol=tol)


def test_backward_in_time_and_saved_states() -> None:
    x_1 = torch.randn(8, 2, dtype=torch.float64)
    res = integrate(linear, x_1, t0=1.0, t1=0.0, save_at=[0.5], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(res.x, x_1 @ torch.linalg.matrix_exp(-A).T, rtol=1e-7, atol=1e-7)
    assert res.xs.shape == (3, 8, 2) and torch.equal(res.xs[0], x_1)
    torch.testing.assert_close(res.xs[1], x_1 @ torch.linalg.matrix_exp(-0.5 * A).T, rtol=1e-7, atol=1e-7)
    fixed = integrate(linear, x_1, method="rk4", steps=10, save_at=[0.2, 0.5])
    assert fixed.xs.shape == (4, 8, 2) and fixed.nfe == 40


def test_errors_are_clear() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"unknown ODE method 'rk45'.*dopri5"):
        integrate(linear, x, method="rk45")
    with pytest.raises(ValueError, match="adaptive.*steps=10"):
        integrate(linear, x, method="dopri5", steps=10)
    with pytest.raises(ValueError, match="fixed-step.*steps"):
        integrate(linear, x, method="euler")
    with pytest.raises(ValueError, match="save_at"):
        integrate(linear, x, save_at=[1.5])
    with pytest.raises(ValueError, match="step grid"):
        integrate(linear, x, method="euler", steps=4, save_at=[0.3])


def test_a_blowing_up_field_raises_solver_error() -> None:
    """dx/dt = x^2 from x(0) = 1 blows up at t = 1: dopri5's step underflows before it gets there."""
    from fmexp.errors import SolverError

    with pytest.raises(SolverError, match="dopri5 failed"):
        integrate(lambda x, t: x**2, torch.ones(4, 1, dtype=torch.float64), t1=1.5, rtol=1e-6, atol=1e-6)


def test_the_step_budget_stops_a_costly_solve() -> None:
    """dx/dt = w cos(w t) with w = 200 holds 64 periods on [0, 2]: dopri5 at rtol 1e-8 needs over a
    thousand steps. Within the default budget (1000 steps) it stops with SolverError after at most
    1000 steps of 6 evaluations (plus the two of the initial step selection); given room, it lands on
    sin(w t1)."""
    from fmexp.errors import SolverError

    w = 200.0
    calls = 0

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return w * torch.cos(w * t)[:, None].expand_as(x)

    x = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(SolverError, match="max_num_steps"):
        integrate(v, x, t1=2.0, rtol=1e-8, atol=1e-8)
    assert calls <= 1000 * 6 + 2
    res = integrate(v, x, t1=2.0, rtol=1e-8, atol=1e-8, max_steps=100_000)
    assert res.nfe > 1000 * 6 + 2
    torch.testing.assert_close(res.x, torch.full_like(x, math.sin(2.0 * w)), rtol=0, atol=1e-6)


ORDER = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
"""Each fixed-step method's order of accuracy p: its global error falls as h^p."""


@pytest.mark.parametrize("method", names("fixed_solver"))
def test_fixed_step_order_of_convergence(method: str) -> None:
    """On the linear ODE, halving h divides the error at t = 1 by 2^p: the slope of log error against log h."""
    x_0 = torch.ones(1, 2, dtype=torch.float64)
    exact = x_0 @ torch.linalg.matrix_exp(A).T
    steps = [8, 16, 32, 64]
    errors = [float((integrate(linear, x_0, method=method, steps=n).x - exact).norm()) for n in steps]
    slopes = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert abs(slopes[-1] - ORDER[method]) < 0.15, (errors, slopes)


def test_heun2_is_the_trapezoid_rule() -> None:
    """One step of dx/dt = 3t^2 from 0: Heun's method averages the field at both ends, h (0 + 3) / 2 = 1.5,
    with 2 calls; the midpoint method gives 3 (1/2)^2 = 0.75, the exact value is 1."""
    x_0 = torch.zeros(1, 1, dtype=torch.float64)
    v = Counter(lambda x, t: 3 * t[:, None] ** 2 * torch.ones_like(x))
    res = integrate(v, x_0, method="heun2", steps=1)
    assert float(res.x) == 1.5 and res.nfe == v.calls == 2
    assert float(integrate(v, x_0, method="midpoint", steps=1).x) == 0.75


@pytest.mark.parametrize(("method", "nfe", "steps"), [("heun2", 8, 4), ("heun2", 7, 0), ("rk4", 6, 0), ("euler", 3, 3)])
def test_a_budget_is_whole_steps_or_none(method: str, nfe: int, steps: int) -> None:
    """An NFE budget buys budget / (calls per step) steps where that is whole; odd budgets skip heun2."""
    assert get_solver(method).steps_for(nfe) == steps
