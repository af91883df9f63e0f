"""Couplings of source and data samples within a minibatch.

``independent`` is the paper's ``q(x_1) p(x_0)``. ``ot`` pairs them by the exact optimal transport
plan for squared Euclidean cost within the batch (minibatch OT-CFM, Tong et al. 2023), solved by POT.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from fmexp.registry import Spec, build

__all__ = ["Coupling", "independent", "minibatch_ot", "get_coupling"]

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


def get_coupling(spec: Spec) -> Coupling:
    """The coupling ``spec`` names (a registered name or a ``_target_`` mapping, ``fmexp.registry``)."""
    coupling: Coupling = build("coupling", spec, "coupling")
    return coupling
