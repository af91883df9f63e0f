"""Log-likelihood of a CNF by the instantaneous change of variables (Chen et al. 2018; paper Sec. 2).

``d/dt log p_t(x_t) = -div v_t(x_t)``. Integrating ``[x; delta]`` with ``d delta/dt = div v`` from the
data point at t=1 back to t=0, with ``delta(1) = 0``, gives ``log p_1(x_1) = log p_0(x(0)) + delta(0)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fmexp.flow.ode import integrate
from fmexp.registry import check_choice

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "LikelihoodResult",
    "velocity_and_divergence",
    "log_likelihood",
    "log_mean_likelihood",
    "gaussian_log_prob",
]

Field = Callable[[Tensor, Tensor], Tensor]
DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


@dataclass(frozen=True)
class LikelihoodResult:
    """``logp``: ``log p_1(x_1)`` in nats, shape ``(B,)``; ``x_0``: the points mapped to t=0; ``nfe``:
    calls to ``v``."""

    logp: Tensor
    x_0: Tensor
    nfe: int


def gaussian_log_prob(x: Tensor, std: float = 1.0) -> Tensor:
    """``log N(x; 0, std^2 I)`` summed over the non-batch dimensions, shape ``(B,)``."""
    d = x[0].numel()
    sq = x.flatten(1).pow(2).sum(1)
    return -0.5 * sq / std**2 - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


def velocity_and_divergence(v: Field, x: Tensor, t: Tensor, probes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(v(x, t), div_x v(x, t))``: exact when ``probes`` is None, else Hutchinson's estimate, the mean
    of ``z_k^T (dv/dx) z_k`` over the K probes ``z_k`` stacked in ``probes`` (shape ``(K, *x.shape)``).

    One forward pass and vector-Jacobian products vectorized with ``torch.func.vmap``: the exact
    trace takes the d rows ``e_j^T J`` at once (no Python loop over dimensions), Hutchinson the K
    products ``z_k^T J``. ``v`` must treat batch elements independently, as velocity networks do.
    """

    def f(y: Tensor) -> Tensor:
        return v(y, t)

    with torch.enable_grad(), warnings.catch_warnings():
        # torch has no vmap rule for CPU attention's backward and loops over the probes instead: the
        # same numbers, slower; said once in docs/performance.md rather than at every solver step
        warnings.filterwarnings("ignore", "There is a performance drop because we have not yet implemented")
        out, vjp = torch.func.vjp(f, x)[:2]
        if probes is not None:
            (z_jac,) = torch.func.vmap(vjp)(probes)  # (K, B, ...)
            return out, (z_jac * probes).flatten(2).sum(2).mean(0)
        d = x[0].numel()
        basis = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, 1, *x.shape[1:]).expand(d, *x.shape)
        (rows,) = torch.func.vmap(vjp)(basis)  # rows[j, b] = e_j^T J_b, shape (d, B, ...)
        diag = rows.flatten(2).diagonal(dim1=0, dim2=2)  # (B, d): entries J_b[j, j]
        return out, diag.sum(1)


def _probes(x: Tensor, kind: str, k: int, generator: torch.Generator | None) -> Tensor:
    """K probes per sample, shape ``(k, *x.shape)``, with ``E[z z^T] = I``."""
    shape = (k, *x.shape)
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
        return bits.to(x.dtype) * 2 - 1
    return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)


def log_likelihood(
    v: Field,
    x_1: Tensor,
    *,
    divergence: str = "exact",
    probe: str = "rademacher",
    probes: int = 1,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    prior_std: float = 1.0,
    generator: torch.Generator | None = None,
    t: float = 1.0,
) -> LikelihoodResult:
    """``log p_t(x_t)`` in nats under the CNF ``v`` with source ``N(0, prior_std^2 I)`` (eq. 1 and Sec. 2),
    solving the flow and its divergence from time ``t`` (default 1: the model's density) back to 0.

    ``divergence="hutchinson"`` draws ``probes`` probes of kind ``probe`` (``rademacher`` or ``gaussian``)
    per sample from ``generator`` and holds them fixed for the whole solve, so the estimate is
    unbiased; its variance falls as 1/``probes``.
    """
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("probe", probe, PROBES)
    if probes < 1:
        raise ValueError(f"probes must be at least 1, got {probes}")
    z = _probes(x_1, probe, probes, generator) if divergence == "hutchinson" else None
    shape, d = x_1.shape, x_1[0].numel()

    def augmented(state: Tensor, t: Tensor) -> Tensor:
        x = state[:, :d].reshape(shape)
        dx, div = velocity_and_divergence(v, x.detach(), t, z)
        return torch.cat([dx.flatten(1), div[:, None]], dim=1).detach()

    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    if t == 0.0:  # p_0 is the source itself
        return LikelihoodResult(logp=gaussian_log_prob(x_1, prior_std), x_0=x_1, nfe=0)
    state_1 = torch.cat([x_1.flatten(1), x_1.new_zeros(shape[0], 1)], dim=1)
    with torch.no_grad():
        res = integrate(augmented, state_1, method=method, rtol=rtol, atol=atol, steps=steps, t0=t, t1=0.0)
    x_0 = res.x[:, :d].reshape(shape)
    logp = gaussian_log_prob(x_0, prior_std) + res.x[:, d]
    return LikelihoodResult(logp=logp, x_0=x_0, nfe=res.nfe)


def log_mean_likelihood(v: Field, draws: Sequence[Tensor], *, probe_seed: int = 0, **kwargs: Any) -> LikelihoodResult:
    """``log (1/K) sum_k p_1(x_k)`` over K draws ``x_k`` of the same points (K uniform dequantizations:
    the paper's Table 4), each by ``log_likelihood(v, x_k, **kwargs)``; ``nfe`` is the mean over draws.

    With Hutchinson divergence every draw uses the same probes (drawn from ``probe_seed``). The probe
    error is then common to the K terms and passes through the log-mean-exp unchanged, with mean 0.
    Independent probes per draw would be averaged inside the exp, which biases the estimate upward
    (by ``log E exp(e)`` as K grows; for K = 2 and an error of +-c, by ``log(cosh c) / 2``).
    """
    if not draws:
        raise ValueError("log_mean_likelihood needs at least one draw")
    results = [
        log_likelihood(v, x, **kwargs, generator=torch.Generator(device=x.device).manual_seed(probe_seed))
        for x in draws
    ]
    logp = torch.logsumexp(torch.stack([r.logp.double() for r in results]), 0) - math.log(len(draws))
    return LikelihoodResult(logp=logp, x_0=results[0].x_0, nfe=round(sum(r.nfe for r in results) / len(results)))
