"""Time grids of fixed-step solves: ``steps + 1`` times from 0 (the source) to 1 (the data).

``uniform`` is the paper's. ``edm`` is Karras et al. (2022, eq. 5)'s schedule, which flow_matching's
CIFAR-10 sampler uses: uniform in ``lambda^(1/rho)`` of the noise-to-signal ratio
``lambda_t = sigma_t / a_t`` of a Gaussian path ``x_t = a_t x_1 + sigma_t x_0`` (eq. 10), so the steps
crowd where the path is close to the data. Each path's ``lambda`` is inverted to map the grid back to t
(for OT with ``sigma_min = 0``, ``t = 1 / (1 + lambda)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fmexp.flow.paths import ProbabilityPath

__all__ = ["uniform", "edm", "noise_to_signal", "time_of"]


def uniform(path: object, steps: int) -> Tensor:
    """``steps`` equal steps from 0 to 1 (float64); any path."""
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


def noise_to_signal(path: ProbabilityPath, t: Tensor) -> Tensor:
    """``lambda_t = sigma_t / a_t``: infinite where ``a_t = 0`` (the OT path at t = 0)."""
    a, sigma, _, _ = path.schedule(t)
    return sigma / a


def time_of(path: ProbabilityPath, lam: Tensor, iters: int = 80) -> Tensor:
    """The t in [0, 1] with ``lambda_t = lam``, by bisection (``lambda_t`` falls with t on every Gaussian
    path from noise to data); a ``lam`` outside the path's range gives the nearer end."""
    lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
    for _ in range(iters):  # 2^-80: below float64's resolution of [0, 1]
        mid = (lo + hi) / 2
        above = noise_to_signal(path, mid) > lam
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def edm(
    path: ProbabilityPath, steps: int, *, rho: float = 7.0, lambda_max: float = 80.0, lambda_min: float = 0.002
) -> Tensor:
    """Karras et al.'s grid in ``lambda`` (eq. 5), mapped to t: starts at 0, ends at 1 (float64).

    ``lambda_i = (l_max^(1/rho) + i/(N-1) (l_min^(1/rho) - l_max^(1/rho)))^rho`` with
    ``l_max = min(lambda_max, lambda(0))`` and ``l_min = max(lambda_min, lambda(1))``. Where the path
    reaches past ``lambda_min`` (``lambda(1) < lambda_min``, as OT's ``sigma_min`` does), the grid holds
    N = ``steps`` points and then t = 1, as EDM appends sigma = 0; otherwise its N = ``steps + 1``
    points end at t = 1 themselves. The first time is 0 (the solve starts at the source), where
    flow_matching's ``get_time_discretization`` starts at ``t(lambda_max)`` (1/81 for OT).
    """
    if not isinstance(path, ProbabilityPath):
        raise ValueError(
            f"the edm grid is defined by a Gaussian path's noise-to-signal ratio; {type(path).__name__} has none"
        )
    ends = noise_to_signal(path, torch.tensor([0.0, 1.0], dtype=torch.float64))
    l_max, l_min = min(lambda_max, float(ends[0])), max(lambda_min, float(ends[1]))
    clipped = float(ends[1]) < lambda_min
    n = steps if clipped else steps + 1
    if n < 2:  # one point: no ratio to interpolate; a 1-step solve goes from 0 to 1
        return uniform(path, steps)
    i = torch.arange(n, dtype=torch.float64)
    lam = (l_max ** (1 / rho) + i / (n - 1) * (l_min ** (1 / rho) - l_max ** (1 / rho))) ** rho
    t = time_of(path, lam)
    t = torch.cat([t, torch.ones(1, dtype=torch.float64)]) if clipped else t
    t[0], t[-1] = 0.0, 1.0
    return t
