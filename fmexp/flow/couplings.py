"""Couplings of source and data samples within a minibatch.

``independent`` is the paper's ``q(x_1) p(x_0)``. ``ot`` pairs them by the exact optimal transport
plan for squared Euclidean cost within the batch (minibatch OT-CFM, Tong et al. 2023), solved by POT.
``schrodinger_bridge`` draws the pairs from the batch's entropic plan (SB-CFM, their Sec. 3.4), so it
takes the training generator: a coupling may take ``generator`` as a keyword, and then gets it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from fmexp.registry import Spec, build

__all__ = ["Coupling", "independent", "minibatch_ot", "schrodinger_bridge", "takes_generator", "get_coupling"]

Coupling = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def independent(x_0: Tensor, x_1: Tensor) -> tuple[Tensor, Tensor]:
    """Keep the pairs as drawn: ``(x_0, x_1) ~ p(x_0) q(x_1)``."""
    return x_0, x_1


def minibatch_ot(x_0: Tensor, x_1: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder ``x_0`` by the batch's OT assignment (equal batch sizes give a permutation plan)."""
    if x_0.shape[0] != x_1.shape[0]:
        raise ValueError(f"minibatch OT needs equal batch sizes, got {x_0.shape[0]} and {x_1.shape[0]}")
    import ot  # imported here: POT pulls in scipy.stats, ~0.7 s

    cost = torch.cdist(x_0.flatten(1).double(), x_1.flatten(1).double()).pow(2).cpu().numpy()
    n = cost.shape[0]
    plan = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), cost)
    source_index = torch.from_numpy(plan.argmax(axis=0)).to(x_0.device)  # x_0 paired with each x_1
    return x_0[source_index], x_1


def schrodinger_bridge(
    x_0: Tensor, x_1: Tensor, *, sigma: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Pairs drawn from the entropic OT plan of the batch, regularization ``2 sigma^2`` for squared
    Euclidean cost: the static Schrodinger bridge of a Brownian motion of diffusion ``sigma`` (Tong et
    al. 2023, Prop. 6). The plan comes from POT's stabilized Sinkhorn (it absorbs large potentials, so a
    small regularization against a large cost does not underflow), to marginal error 1e-8; the
    ``B`` pairs are drawn from it with replacement, both indices at once, as torchcfm's
    ``OTPlanSampler.sample_plan`` does, not taken by its argmax. ``sigma`` is the bridge's
    (``fmexp.flow.bridges.BrownianBridge``), which ``fmexp.config.plan`` passes."""
    if sigma <= 0:
        raise ValueError(f"the Schrodinger bridge coupling needs sigma > 0, got {sigma}")
    import ot

    n, m = x_0.shape[0], x_1.shape[0]
    cost = torch.cdist(x_0.flatten(1).double(), x_1.flatten(1).double()).pow(2).cpu().numpy()
    cost -= cost.min(axis=1, keepdims=True)  # a shift per row and per column leaves the plan as it is, and
    cost -= cost.min(axis=0, keepdims=True)  # puts a zero in each, so no row or column of exp(-C / reg) underflows
    plan = ot.sinkhorn(
        np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost, reg=2 * sigma**2, method="sinkhorn_stabilized", stopThr=1e-8
    )
    weights = torch.from_numpy(plan).flatten().clamp_min(0.0).to(x_0.device)
    flat = torch.multinomial(weights, n, replacement=True, generator=generator)
    return x_0[flat // m], x_1[flat % m]


def takes_generator(coupling: Coupling) -> bool:
    """Whether ``coupling`` draws at random and takes the training generator as ``generator=``."""
    import inspect

    try:
        return "generator" in inspect.signature(coupling).parameters
    except (TypeError, ValueError):
        return False


def get_coupling(spec: Spec) -> Coupling:
    """The coupling ``spec`` names (a registered name or a ``_target_`` mapping, ``fmexp.registry``)."""
    coupling: Coupling = build("coupling", spec, "coupling")
    return coupling
