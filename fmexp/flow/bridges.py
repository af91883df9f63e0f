"""Paths conditioned on both endpoints: data-to-data flows (Tong et al. 2023, "Improving and generalizing
flow-based generative models with minibatch optimal transport", Sec. 3).

Given a pair ``(x_0, x_1)`` from a coupling of the source and the data, a bridge is the Gaussian path

    x_t = mu_t + s_t eps,   mu_t = t x_1 + (1 - t) x_0,   eps ~ N(0, I)         (Tong et al., eq. 14)

whose conditional field is ``u_t = s_t'/s_t (x_t - mu_t) + (x_1 - x_0) = s_t' eps + (x_1 - x_0)``
(their eq. 15), computed in the first form. Both ends sit at the pair's points up to ``s_0`` and
``s_1``: with ``s`` constant the marginal at t = 0 is the source smoothed by ``N(0, sigma^2 I)``
(I-CFM, OT-CFM), and with the Brownian bridge's ``s_t = sigma sqrt(t (1 - t))`` it is the source
itself (SB-CFM). Unlike a ``ProbabilityPath`` (``fmexp.flow.paths``), whose ``x_0`` is the noise, a
bridge's ``x_0`` is a point of the source and its noise is a third draw.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from fmexp.flow.paths import PathSample, _expand

__all__ = ["Bridge", "ConstantBridge", "BrownianBridge"]


class Bridge(ABC):
    """``x_t = t x_1 + (1 - t) x_0 + s_t eps`` for a coupled pair ``(x_0, x_1)`` (Tong et al. 2023, eq. 14)."""

    sigma: float

    def __init__(self, sigma: float) -> None:
        if not (math.isfinite(sigma) and sigma >= 0.0):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
        self.sigma = float(sigma)

    @abstractmethod
    def noise(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(s_t, s_t' / s_t)`` elementwise in ``t``: the noise's std and its log-derivative."""

    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor, eps: Tensor) -> PathSample:
        """``x_t`` and its target ``u_t = s_t'/s_t (x_t - mu_t) + (x_1 - x_0)`` (eqs. 14-15), for ``t`` of
        shape ``(B,)``. In this form the target stays finite where ``s_t = 0`` (the Brownian bridge at a
        float draw of t = 0): there ``x_t = mu_t`` and ``u_t = x_1 - x_0``."""
        s, log_ds = (_expand(v, x_0) for v in self.noise(t))
        tt = _expand(t, x_0)
        mu = tt * x_1 + (1 - tt) * x_0
        x_t = mu + s * eps
        return PathSample(x_0=x_0, x_1=x_1, t=t, x_t=x_t, u_t=log_ds * (x_t - mu) + (x_1 - x_0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma!r})"


class ConstantBridge(Bridge):
    """``s_t = sigma``: I-CFM with the independent coupling, OT-CFM with minibatch OT (Tong et al., Sec. 3.2-3.3);
    the target is the straight ``u_t = x_1 - x_0``."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__(sigma)

    def noise(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.full_like(t, self.sigma), torch.zeros_like(t)


class BrownianBridge(Bridge):
    """``s_t = sigma sqrt(t (1 - t))``, the Brownian bridge of a Wiener process of diffusion ``sigma``
    between the pair: with pairs from the entropic plan of regularization ``2 sigma^2``
    (``fmexp.flow.couplings.schrodinger_bridge``), SB-CFM (Tong et al., Sec. 3.4, Prop. 6). Then
    ``s_t'/s_t = (1 - 2t) / (2 t (1 - t))``. The target's variance grows as ``1 / (t (1 - t))`` near the
    ends, as in Tong et al.'s; at a float draw of exactly t = 0 it is ``x_1 - x_0`` (``Bridge.sample``)."""

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__(sigma)

    def noise(self, t: Tensor) -> tuple[Tensor, Tensor]:
        variance = t * (1 - t)  # at t = 0 or 1 the ratio is huge but finite, and multiplies x_t - mu_t = 0
        return self.sigma * torch.sqrt(variance), (1 - 2 * t) / (2 * variance.clamp_min(torch.finfo(t.dtype).tiny))
