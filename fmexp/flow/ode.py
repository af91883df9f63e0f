"""Integrate a velocity field ``dx/dt = v(x, t)`` with torchdiffeq, counting function evaluations.

A CNF samples by solving this ODE from the source at t=0 to the data at t=1 (eq. 1). The number
of function evaluations (NFE) is the paper's cost measure (Table 1, Figs. 7 and 10); it is counted
here exactly, as the calls made to ``v``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchdiffeq import odeint

from fmexp.errors import SolverError
from fmexp.registry import check_name, names, resolve

__all__ = ["Solver", "Rung", "ODEResult", "get_solver", "chunks", "integrate"]

Field = Callable[[Tensor, Tensor], Tensor]


def chunks(n: int, size: int | None) -> list[slice]:
    """``n`` items in consecutive slices of at most ``size`` (``None``: one slice): the batches of a
    solve whose memory must not grow with ``n``."""
    size = n if size is None else size
    return [slice(i, min(i + size, n)) for i in range(0, n, max(size, 1))]


@dataclass(frozen=True)
class Solver:
    """A torchdiffeq method: adaptive (takes rtol, atol) or fixed-step (takes ``steps``)."""

    name: str
    adaptive: bool
    evals_per_step: int | None = None  # fixed-step methods only

    def steps_for(self, nfe: int) -> int:
        """The steps of a fixed-step solve of exactly ``nfe`` field evaluations; 0 where ``nfe`` is not a
        whole number of steps (heun2 at an odd budget)."""
        if self.evals_per_step is None:
            raise ValueError(f"{self.name} is adaptive: its NFE is not set by a number of steps")
        steps, rest = divmod(nfe, self.evals_per_step)
        return 0 if rest else steps

    def nfe_of(self, steps: int) -> int:
        """The field evaluations of a fixed-step solve of ``steps`` steps."""
        if self.evals_per_step is None:
            raise ValueError(f"{self.name} is adaptive: its NFE is not set by a number of steps")
        return steps * self.evals_per_step


DOPRI5 = Solver("dopri5", adaptive=True)
DOPRI8 = Solver("dopri8", adaptive=True)
BOSH3 = Solver("bosh3", adaptive=True)
EULER = Solver("euler", adaptive=False, evals_per_step=1)
MIDPOINT = Solver("midpoint", adaptive=False, evals_per_step=2)
HEUN2 = Solver("heun2", adaptive=False, evals_per_step=2)  # Heun's method: the trapezoid rule's predictor-corrector
HEUN3 = Solver("heun3", adaptive=False, evals_per_step=3)
RK4 = Solver("rk4", adaptive=False, evals_per_step=4)


@dataclass(frozen=True)
class Rung:
    """One fixed-step sampler of the NFE ladder: a solver, a time grid (``fmexp.flow.grids``) and its steps.

    Its ``key`` names it in ``samples.pt``: ``euler:4`` on the uniform grid, ``heun2@edm:4`` on another.
    """

    solver: str
    grid: str
    steps: int

    @property
    def key(self) -> str:
        sampler = self.solver if self.grid == "uniform" else f"{self.solver}@{self.grid}"
        return f"{sampler}:{self.steps}"

    @property
    def nfe(self) -> int:
        return get_solver(self.solver).nfe_of(self.steps)

    @classmethod
    def at(cls, sampler: str, nfe: int) -> Rung:
        """The rung of ``sampler`` (``solver``, or ``solver@grid``) at a budget of ``nfe`` NFE per path."""
        solver, _, grid = sampler.partition("@")
        return cls(solver, grid or "uniform", get_solver(solver).steps_for(nfe))

    @classmethod
    def parse(cls, key: str) -> Rung:
        sampler, _, steps = key.rpartition(":")
        solver, _, grid = sampler.partition("@")
        return cls(solver, grid or "uniform", int(steps))


@dataclass(frozen=True)
class ODEResult:
    """``x``: the state at ``t1``; ``xs``: the states at each saved time; ``nfe``: calls made to ``v``."""

    x: Tensor
    xs: Tensor
    times: Tensor
    nfe: int


def get_solver(method: str) -> Solver:
    """The registered solver ``method`` (an ``adaptive_solver`` or a ``fixed_solver``); an unknown name
    raises ``ConfigError`` listing the choices."""
    check_name(("adaptive_solver", "fixed_solver"), method)
    kind = "adaptive_solver" if method in names("adaptive_solver") else "fixed_solver"
    solver: Solver = resolve(kind, method)
    return solver


def integrate(
    v: Field,
    x_0: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    grid: Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    save_at: Sequence[float] | None = None,
    max_steps: int = 1000,
) -> ODEResult:
    """Solve ``dx/dt = v(x, t)`` from ``x(t0) = x_0`` to ``t1`` (eq. 1), with ``t`` passed to ``v`` as ``(B,)``.

    Fixed-step methods take ``steps``: uniform steps from t0 to t1, or the ``steps + 1`` times of
    ``grid`` (from t0 to t1: ``fmexp.flow.grids``); adaptive methods take ``rtol`` and ``atol``.
    ``save_at`` lists extra times (between t0 and t1, in order) whose states are kept in ``xs``;
    ``xs[0]`` is always ``x_0`` and ``xs[-1]`` the final state. An adaptive solve that needs more than
    ``max_steps`` accepted-or-rejected steps raises ``SolverError``: a trained field takes tens of steps,
    a diverged one can take millions. Autograd is left as the caller set it: wrap a sampling call in
    ``torch.no_grad()``.
    """
    solver = get_solver(method)
    if solver.adaptive:
        if steps is not None:
            raise ValueError(f"{method} is adaptive: it takes rtol and atol, not steps={steps}")
        if rtol <= 0 or atol <= 0:
            raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    elif steps is None or steps < 1:
        raise ValueError(f"{method} is a fixed-step method: give steps >= 1, got steps={steps}")
    if t0 == t1:
        raise ValueError("t0 and t1 must differ")

    times = [float(t0), *(float(s) for s in (save_at or ())), float(t1)]
    sign = 1.0 if t1 > t0 else -1.0
    if any(sign * (b - a) <= 0 for a, b in zip(times, times[1:], strict=False)):
        raise ValueError(f"save_at must lie strictly between t0={t0} and t1={t1}, in order; got {save_at}")
    t_grid = torch.tensor(times, dtype=x_0.dtype, device=x_0.device)

    nfe = 0
    batch = x_0.shape[0]

    def f(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return v(x, t.expand(batch))

    options: dict[str, object] = {}
    if solver.adaptive:
        # Land exactly on each output time instead of stepping past it and interpolating, so that
        # v is never called outside [t0, t1] (the VP schedule and a trained net are undefined there).
        options["step_t"] = t_grid
        options["max_num_steps"] = max_steps
    else:
        assert steps is not None  # checked above for every fixed-step method
        if grid is None:
            grid = torch.linspace(t0, t1, steps + 1, dtype=x_0.dtype, device=x_0.device)
        grid = grid.to(dtype=x_0.dtype, device=x_0.device)
        if grid.shape != (steps + 1,) or float(grid[0]) != t0 or float(grid[-1]) != t1:
            raise ValueError(f"a grid of {steps} steps holds {steps + 1} times from {t0} to {t1}; got {grid.tolist()}")
        options["grid_constructor"] = lambda func, y0, t: grid
        if save_at:
            on_grid = torch.isclose(grid[:, None], t_grid[None, 1:-1].to(grid)).any(0)
            if not bool(on_grid.all()):
                raise ValueError(f"with {method} at steps={steps}, save_at must lie on the step grid")
    try:
        xs = odeint(f, x_0, t_grid, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as e:  # torchdiffeq signals "underflow in dt" and "max_num_steps exceeded" by assertions
        raise SolverError(f"{method} failed after {nfe} function evaluations: {e}") from e
    if not bool(torch.isfinite(xs[-1]).all()):
        raise SolverError(f"{method} reached a non-finite state after {nfe} function evaluations")
    return ODEResult(x=xs[-1], xs=xs, times=t_grid, nfe=nfe)
