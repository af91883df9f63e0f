"""Closed forms the tests check against: each path with non-default parameters, the Gaussian marginal
of Gaussian data on any path (its field from autograd, not from the path's code), and a call counter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fmexp.flow.paths import ProbabilityPath, get_path


def make_path(name: str) -> ProbabilityPath:
    """Each registered path with a non-default sigma_min, so defaults cannot hide a bug."""
    return get_path(name, sigma_min=0.05) if name != "ve" else get_path(name, sigma_min=0.05, sigma_max=8.0)


@dataclass
class GaussianMarginal:
    """For data ``N(m, s^2 I)`` on ``x_t = a_t x_1 + sigma_t x_0``: ``p_t = N(a_t m, (a_t^2 s^2 + sigma_t^2) I)``.

    Its marginal field is ``u_t(x) = M_t' + (S_t'/S_t) (x - M_t)`` (the affine flow of a Gaussian),
    which equals ``E[sigma_t' x_0 + a_t' x_1 | x_t = x]``. Derivatives come from autograd, not the path.
    """

    path: ProbabilityPath
    m: torch.Tensor
    s: float

    def mean_std(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, sigma, _, _ = self.path.schedule(t)
        return a[:, None] * self.m, torch.sqrt(a**2 * self.s**2 + sigma**2)[:, None]

    def field(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        def a_of(u: torch.Tensor) -> torch.Tensor:
            return self.path.schedule(u[None])[0][0] + 0 * u  # "+ 0 u" keeps VE's constant a_t traced

        def std_of(u: torch.Tensor) -> torch.Tensor:
            a, sigma, _, _ = self.path.schedule(u[None])
            return torch.sqrt(a[0] ** 2 * self.s**2 + sigma[0] ** 2)

        # functorch derivatives, so this field also works inside log_likelihood's vjp
        da, dstd = torch.func.vmap(torch.func.grad(a_of))(t), torch.func.vmap(torch.func.grad(std_of))(t)
        a, std = torch.func.vmap(a_of)(t), torch.func.vmap(std_of)(t)
        return da[:, None] * self.m + (dstd / std)[:, None] * (x - a[:, None] * self.m)


class Counter:
    """Wrap a field and count its calls independently of the code under test."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.f(x, t)


LOG_2PI = math.log(2 * math.pi)
