"""Scores of a trained CNF: bits per dimension and sample distances."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from torch import Tensor

from fmexp.registry import resolve

__all__ = [
    "bits_per_dim",
    "sliced_wasserstein",
    "wasserstein2",
    "sample_distance",
    "gaussian_stats",
    "frechet_distance",
]


def bits_per_dim(nll_nats: Tensor | float, dim: int, scale: float = 1.0) -> Tensor | float:
    """NLL in bits per dimension of dequantized data ``u``, from the model's NLL on ``y = scale * u + shift``.

    ``log p_u(u) = log p_y(y) + d log scale`` (change of variables), so
    ``bpd = (nll_y - d log scale) / (d log 2)``. With ``u`` the integers plus U[0, 1) noise, this bounds
    the discrete NLL from above (uniform dequantization, the paper's Table 1 convention).
    """
    return (nll_nats - dim * math.log(scale)) / (dim * math.log(2.0))


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two samples (POT), with seeded projections."""
    import ot

    return float(
        ot.sliced_wasserstein_distance(
            x.flatten(1).double().numpy(), y.flatten(1).double().numpy(), n_projections=n_projections, seed=seed
        )
    )


def wasserstein2(x: Tensor, y: Tensor) -> float:
    """Exact 2-Wasserstein distance between two empirical samples, by POT's network simplex."""
    import ot

    a, b = x.flatten(1).double().numpy(), y.flatten(1).double().numpy()
    cost = ot.dist(a, b)  # squared Euclidean
    return math.sqrt(
        float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=1_000_000))
    )


def sample_distance(name: str, x: Tensor, y: Tensor) -> float:
    """The registered distance ``name`` between samples ``x`` and ``y``."""
    fn: Callable[[Tensor, Tensor], float] = resolve("distance", name)
    return fn(x, y)


def gaussian_stats(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of features ``(n, k)``: the Gaussian that FID fits."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (Heusel et al. 2017):

        ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2}).

    ``tr((s1 s2)^{1/2}) = tr((s1^{1/2} s2 s1^{1/2})^{1/2})``, and the inner matrix is symmetric PSD, so
    its root comes from a symmetric eigendecomposition (scipy) with round-off negatives clipped to 0,
    as does ``s1^{1/2}``. That avoids the complex parts and the eps offset that ``sqrtm(s1 @ s2)``
    needs on near-singular input.
    """
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes disagree: mu {mu1.shape}, {mu2.shape}; sigma {s1.shape}, {s2.shape}")
    w, v = scipy.linalg.eigh(0.5 * (s1 + s1.T))  # the PSD square root of s1, exact for singular s1
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root1 @ s2 @ root1
    eig = scipy.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
