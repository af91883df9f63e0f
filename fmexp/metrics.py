"""Scores of a trained CNF: bits per dimension and sample distances."""

from __future__ import annotations

import math

import numpy as np
import ot
import torch
from torch import Tensor

__all__ = ["bits_per_dim", "sliced_wasserstein", "wasserstein2", "DISTANCES", "sample_distance"]


def bits_per_dim(nll_nats: Tensor | float, dim: int, scale: float = 1.0) -> Tensor | float:
    """NLL in bits per dimension of dequantized data ``u``, from the model's NLL on ``y = scale * u + shift``.

    ``log p_u(u) = log p_y(y) + d log scale`` (change of variables), so
    ``bpd = (nll_y - d log scale) / (d log 2)``. With ``u`` the integers plus U[0, 1) noise, this bounds
    the discrete NLL from above (uniform dequantization, the paper's Table 1 convention).
    """
    return (nll_nats - dim * math.log(scale)) / (dim * math.log(2.0))


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two samples (POT), with seeded projections."""
    return float(ot.sliced_wasserstein_distance(x.flatten(1).double().numpy(), y.flatten(1).double().numpy(), n_projections=n_projections, seed=seed))


def wasserstein2(x: Tensor, y: Tensor) -> float:
    """Exact 2-Wasserstein distance between two empirical samples, by POT's network simplex."""
    a, b = x.flatten(1).double().numpy(), y.flatten(1).double().numpy()
    cost = ot.dist(a, b)  # squared Euclidean
    return math.sqrt(float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=1_000_000)))


DISTANCES = {"w2": wasserstein2, "sliced_w2": sliced_wasserstein}


def sample_distance(name: str, x: Tensor, y: Tensor) -> float:
    """The registered distance ``name`` between samples ``x`` and ``y``."""
    try:
        fn = DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}") from None
    return fn(x, y)
