"""Reflow (Liu et al. 2022, "Flow Straight and Fast", Alg. 1): couple noise to a trained flow's own samples
and train a new flow on those couples, which straightens it, so that few Euler steps suffice.

Round k draws ``Z_0`` from the source and solves the round k-1 flow to ``Z_1`` (dopri5); round k then
regresses ``Z_1 - Z_0`` on the straight interpolant between them (the OT path with ``sigma_min = 0``:
``x_t = t Z_1 + (1 - t) Z_0``, eq. 20-22), drawing stored couples jointly (``PairedSource``).
Straightness measures how far a flow is from that: ``S = int_0^1 E ||(Z_1 - Z_0) - v(Z_t, t)||^2 dt`` along
its own trajectories, 0 for a flow whose trajectories are straight lines run at constant speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fmexp.flow.ode import Field, chunks, integrate

__all__ = ["PairedSource", "ReflowPairs", "reflow_pairs", "along_trajectories", "straightness"]


@dataclass(frozen=True)
class PairedSource:
    """Stored couples ``(x_0[i], x_1[i])``: a training batch draws rows with replacement, both sides by the
    same index, so the coupling is the stored one (reflow's)."""

    x_0: Tensor
    x_1: Tensor

    def __post_init__(self) -> None:
        if self.x_0.shape != self.x_1.shape:
            raise ValueError(f"couples need equal shapes, got {tuple(self.x_0.shape)} and {tuple(self.x_1.shape)}")

    def sample_pairs(
        self, n: int, generator: torch.Generator | None, device: torch.device | str
    ) -> tuple[Tensor, Tensor]:
        index = torch.randint(len(self.x_0), (n,), generator=generator, device=device)
        return self.x_0.to(device)[index], self.x_1.to(device)[index]

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> Tensor:
        """``x_0`` alone, as a source of starts."""
        return self.sample_pairs(n, generator, device)[0]


@dataclass(frozen=True)
class ReflowPairs:
    """``x_1[i]``: the dopri5 endpoint of ``x_0[i]``; ``nfe``: the mean NFE per solve; ``seconds``: their time."""

    x_0: Tensor
    x_1: Tensor
    nfe: float
    seconds: float


def reflow_pairs(v: Field, x_0: Tensor, *, rtol: float, atol: float, batch_size: int | None = None) -> ReflowPairs:
    """Solve ``v`` from each start in ``x_0`` to t = 1 with dopri5, ``batch_size`` starts per solve (an
    adaptive solve's steps depend on its batch: the same ``batch_size`` gives the same pairs)."""
    import time

    ends, nfes = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for part in chunks(len(x_0), batch_size):
            result = integrate(v, x_0[part], method="dopri5", rtol=rtol, atol=atol)
            ends.append(result.x)
            nfes.append(result.nfe)
    seconds = time.perf_counter() - start
    return ReflowPairs(x_0=x_0, x_1=torch.cat(ends), nfe=sum(nfes) / len(nfes), seconds=seconds)


def along_trajectories(v: Field, x_0: Tensor, *, times: int, rtol: float, atol: float) -> tuple[Tensor, Tensor, Tensor]:
    """The dopri5 trajectories of ``v`` from ``x_0`` at ``times`` evenly spaced times from 0 to 1 (where the
    solver lands exactly), and the field on them: ``(t (T,), x (T, B, ...), v (T, B, ...))``."""
    grid = torch.linspace(0.0, 1.0, times, dtype=x_0.dtype, device=x_0.device)
    with torch.no_grad():
        solve = integrate(v, x_0, rtol=rtol, atol=atol, save_at=grid[1:-1].tolist())
        field = torch.stack([v(x, t.expand(len(x))) for x, t in zip(solve.xs, solve.times, strict=True)])
    return solve.times, solve.xs, field


def straightness(v: Field, x_0: Tensor, *, times: int = 64, rtol: float = 1e-5, atol: float = 1e-5) -> float:
    """``S = int_0^1 E ||(Z_1 - Z_0) - v(Z_t, t)||^2 dt`` along each dopri5 trajectory from ``x_0`` to its own
    endpoint ``Z_1`` (Liu et al. 2022, eq. 4 as a mean over the trajectories), by the trapezoid rule over
    ``times`` (at least 32) evenly spaced times."""
    if times < 32:
        raise ValueError(f"straightness integrates over at least 32 times, got {times}")
    t, xs, field = along_trajectories(v, x_0, times=times, rtol=rtol, atol=atol)
    chord = xs[-1] - xs[0]
    gap = (chord.unsqueeze(0) - field).flatten(2).pow(2).sum(2)  # (T, B)
    return float(torch.trapezoid(gap.mean(1).double(), t.double()))
