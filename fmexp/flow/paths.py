"""Gaussian conditional probability paths (Lipman et al. 2022, Sec. 4).

Every path here is affine in ``(x_0, x_1)``:

    psi_t(x_0) = sigma_t x_0 + mu_t,   mu_t = a_t x_1                       (eq. 11)
    u_t(psi_t(x_0) | x_1) = sigma_t' x_0 + a_t' x_1                         (eq. 13, Thm. 3)

so a path is two scalar schedules of t, ``a_t`` and ``sigma_t``, with their derivatives. Time runs
from t=0 (noise) to t=1 (data), and ``sigma_min`` is, for every path, the std of p_t(x | x_1) at t=1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from fmexp.registry import Spec, build

__all__ = [
    "PathSample",
    "ProbabilityPath",
    "CondOTPath",
    "VPPath",
    "VEPath",
    "CosinePath",
    "PolynomialPath",
    "LinearVPPath",
    "get_path",
]


@dataclass(frozen=True)
class PathSample:
    """A draw from a conditional path: ``x_t = psi_t(x_0)`` and its target ``u_t(x_t | x_1)``."""

    x_0: Tensor
    x_1: Tensor
    t: Tensor
    x_t: Tensor
    u_t: Tensor


def _expand(t: Tensor, like: Tensor) -> Tensor:
    """Shape a per-sample time ``(B,)`` so it broadcasts against ``(B, ...)``."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


class ProbabilityPath(ABC):
    """A Gaussian conditional path ``p_t(x | x_1) = N(a_t x_1, sigma_t^2 I)`` (eq. 10)."""

    sigma_min: float

    @abstractmethod
    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``(a_t, sigma_t, d a_t/dt, d sigma_t/dt)`` elementwise in ``t``."""

    @property
    def prior_std(self) -> float:
        """Std of the source ``N(0, prior_std^2 I)`` that sampling starts from at t=0."""
        return 1.0

    def input_scale(self, t: Tensor, data_std: float) -> Tensor:
        """``c_t = min(1, max(1, s) / sigma_t)`` for data of std ``s`` per coordinate: the factor on ``x_t``
        that keeps the noise the network sees within the larger of the data's scale and the unit
        source's. OT and VP (``sigma_t <= 1``) are untouched, ``c_t = 1``; VE's noise, of std up to
        ``sigma_max`` (its source reaches about ``3 sigma_max``, where Fourier features chosen for the
        data alias), is brought down to that scale. An adaptive solver may step a little past t = 1 (and
        interpolate back), where a path's schedule need not exist (VP's std turns NaN): ``c_t`` takes
        its value at the nearest end there."""
        _, sigma, _, _ = self.schedule(t.clamp(0.0, 1.0))
        return torch.clamp(max(1.0, data_std) / sigma, max=1.0)

    def mu_sigma(self, x_1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``mu_t(x_1)`` and std ``sigma_t`` of ``p_t(x | x_1)`` (eq. 10)."""
        a, sigma, _, _ = self.schedule(t)
        return _expand(a, x_1) * x_1, _expand(sigma, x_1)

    def psi(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> Tensor:
        """The conditional flow ``psi_t(x_0) = sigma_t x_0 + mu_t(x_1)`` (eq. 11)."""
        a, sigma, _, _ = self.schedule(t)
        return _expand(sigma, x_0) * x_0 + _expand(a, x_1) * x_1

    def u(self, x: Tensor, x_1: Tensor, t: Tensor) -> Tensor:
        """The conditional field ``u_t(x | x_1) = sigma_t'/sigma_t (x - mu_t) + mu_t'`` (eq. 15)."""
        a, sigma, da, dsigma = self.schedule(t)
        a, sigma, da, dsigma = (_expand(s, x) for s in (a, sigma, da, dsigma))
        return dsigma / sigma * (x - a * x_1) + da * x_1

    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> PathSample:
        """``x_t = psi_t(x_0)`` and ``u_t = d/dt psi_t(x_0) = sigma_t' x_0 + mu_t'`` (eqs. 11, 13)."""
        a, sigma, da, dsigma = (_expand(s, x_0) for s in self.schedule(t))
        x_t = sigma * x_0 + a * x_1
        u_t = dsigma * x_0 + da * x_1
        return PathSample(x_0=x_0, x_1=x_1, t=t, x_t=x_t, u_t=u_t)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _check_sigma_min(sigma_min: float, upper: float = 1.0) -> None:
    if not 0.0 <= sigma_min < upper:
        raise ValueError(f"sigma_min must lie in [0, {upper}), got {sigma_min}")


class CondOTPath(ProbabilityPath):
    """The paper's OT path: ``mu_t = t x_1``, ``sigma_t = 1 - (1 - sigma_min) t`` (eqs. 20-22)."""

    def __init__(self, sigma_min: float = 1e-4) -> None:
        _check_sigma_min(sigma_min)
        self.sigma_min = float(sigma_min)

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = 1.0 - self.sigma_min
        return t, 1.0 - c * t, torch.ones_like(t), torch.full_like(t, -c)


class VPPath(ProbabilityPath):
    """The VP diffusion path (eqs. 18-19): ``mu_t = alpha_{1-t} x_1``, ``sigma_t = sqrt(1 - alpha_{1-t}^2)``.

    ``alpha_s = exp(-T(s)/2)`` with ``T(s) = beta_min s + (beta_max - beta_min) s^2 / 2``. Its std
    reaches 0 at s=0, so diffusion time is truncated at ``s_min > 0`` where the std equals
    ``sigma_min``, and t in [0, 1] maps affinely onto s in [1, s_min]: ``s = 1 - (1 - s_min) t``.
    With ``sigma_min = 1e-4`` that is ``s_min ~ 1e-7``, close to the paper's ``t <= 1 - 1e-5``.
    The source at t=0 is only approximately ``N(0, I)``: ``alpha_1 ~ 0.0066``.
    """

    def __init__(self, sigma_min: float = 1e-4, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        _check_sigma_min(sigma_min)
        if not 0.0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.sigma_min, self.beta_min, self.beta_max = float(sigma_min), float(beta_min), float(beta_max)
        # Solve T(s_min) = -log(1 - sigma_min^2), i.e. 1 - alpha_{s_min}^2 = sigma_min^2.
        target = -math.log1p(-(self.sigma_min**2))
        k = self.beta_max - self.beta_min
        if k == 0.0:
            self.s_min = target / self.beta_min
        else:  # positive root of k/2 s^2 + beta_min s - target = 0, in a cancellation-free form
            self.s_min = 2.0 * target / (self.beta_min + math.sqrt(self.beta_min**2 + 2.0 * k * target))

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ds_dt = -(1.0 - self.s_min)
        s = 1.0 + ds_dt * t
        big_t = self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2
        beta = self.beta_min + (self.beta_max - self.beta_min) * s
        alpha = torch.exp(-0.5 * big_t)
        one_minus_alpha2 = -torch.expm1(-big_t)
        sigma = torch.sqrt(one_minus_alpha2)
        dalpha_ds = -0.5 * beta * alpha
        dsigma_ds = -alpha * dalpha_ds / sigma  # d/ds sqrt(1 - alpha^2)
        return alpha, sigma, dalpha_ds * ds_dt, dsigma_ds * ds_dt


class VEPath(ProbabilityPath):
    """The VE diffusion path (eqs. 16-17): ``mu_t = x_1``, ``sigma_t = sigma_min (sigma_max/sigma_min)^{1-t}``.

    At t=1 the std is ``sigma_min``; at t=0 the path is ``N(x_1, sigma_max^2 I)``, which is
    approximated by the source ``N(0, sigma_max^2 I)``. That approximation is sound when
    ``sigma_max`` is as large as the largest distance between two data points (Song & Ermon 2020,
    "Technique 1"): then the source covers every ``x_1``. The default 10 suits the 2-D datasets
    (spread over about [-4, 4]^2); ``fmexp.data.datasets.max_pairwise_distance`` gives the rule's value for
    other data.
    """

    def __init__(self, sigma_min: float = 1e-2, sigma_max: float = 10.0) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"VE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp(log_ratio * (1.0 - t))
        return torch.ones_like(t), sigma, torch.zeros_like(t), -log_ratio * sigma


class CosinePath(ProbabilityPath):
    """The cosine schedule (Nichol and Dhariwal 2021; flow_matching's ``CosineScheduler``):
    ``a_t = sin(pi t / 2)``, ``sigma_t = sigma_min + (1 - sigma_min) cos(pi t / 2)``.

    ``sigma_min`` enters as an offset that vanishes at t=0, so the std at t=1 is ``sigma_min`` and the
    field ``sigma_t'/sigma_t (x - mu_t) + mu_t'`` stays finite there for ``sigma_min > 0``."""

    def __init__(self, sigma_min: float = 1e-4) -> None:
        _check_sigma_min(sigma_min)
        self.sigma_min = float(sigma_min)

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        half_pi = 0.5 * math.pi
        c = 1.0 - self.sigma_min
        return (
            torch.sin(half_pi * t),
            self.sigma_min + c * torch.cos(half_pi * t),
            half_pi * torch.cos(half_pi * t),
            -c * half_pi * torch.sin(half_pi * t),
        )


class PolynomialPath(ProbabilityPath):
    """The polynomial schedule (flow_matching's ``PolynomialConvexScheduler``): ``a_t = t^n``,
    ``sigma_t = 1 - (1 - sigma_min) t^n``; ``n = 1`` is the paper's OT path (eqs. 20-22).

    As for OT, ``sigma_min`` scales the decay of the std, which is ``sigma_min`` at t=1."""

    def __init__(self, sigma_min: float = 1e-4, power: float = 2.0) -> None:
        _check_sigma_min(sigma_min)
        if not power > 0:
            raise ValueError(f"the polynomial path needs power > 0, got {power}")
        self.sigma_min, self.power = float(sigma_min), float(power)

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, c = self.power, 1.0 - self.sigma_min
        t_n = t**n
        dt_n = n * t ** (n - 1) if n != 1 else torch.ones_like(t)
        return t_n, 1.0 - c * t_n, dt_n, -c * dt_n


class LinearVPPath(ProbabilityPath):
    """The linear variance-preserving schedule (flow_matching's ``LinearVPScheduler``): ``a_t = t``,
    ``sigma_t = sqrt(1 - (1 - sigma_min^2) t^2)``.

    Without ``sigma_min``, ``d sigma_t/dt = -t / sqrt(1 - t^2)`` diverges at t=1; with it the std at
    t=1 is ``sigma_min`` and the derivative ends at ``-(1 - sigma_min^2) / sigma_min``, finite."""

    def __init__(self, sigma_min: float = 1e-4) -> None:
        if not 0.0 < sigma_min < 1.0:
            raise ValueError(
                f"the linear-VP path needs sigma_min in (0, 1) to keep its field finite at t=1, got {sigma_min}"
            )
        self.sigma_min = float(sigma_min)

    def schedule(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = 1.0 - self.sigma_min**2
        sigma = torch.sqrt(1.0 - c * t**2)
        return t, sigma, torch.ones_like(t), -c * t / sigma


def get_path(spec: Spec, **context: float) -> ProbabilityPath:
    """The path ``spec`` names (a registered name or a ``_target_`` mapping, ``fmexp.registry``), given
    ``context`` (``sigma_min``, ``sigma_max``) where it takes them."""
    path: ProbabilityPath = build("path", spec, "path", **context)
    return path
