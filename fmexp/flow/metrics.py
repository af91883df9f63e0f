"""Scores of a trained CNF: bits per dimension, sample distances, the Frechet distance (FID), and the
path energy of a data-to-data flow."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from fmexp.flow.losses import Field
from fmexp.registry import resolve

__all__ = [
    "bits_per_dim",
    "sliced_wasserstein",
    "wasserstein2",
    "path_energy",
    "normalized_path_energy",
    "sample_distance",
    "gaussian_stats",
    "frechet_distance",
    "fid_infinity",
    "fid_scores",
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
        float(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10_000_000))
    )


def path_energy(v: Field, x_0: Tensor, *, times: int = 64, rtol: float = 1e-5, atol: float = 1e-5) -> float:
    """``PE = E int_0^1 ||v(t, x_t)||^2 dt`` along the dopri5 trajectories of ``v`` from ``x_0`` (Tong et al.
    2023, Sec. 5.1): the field is evaluated on each trajectory at ``times`` evenly spaced times, where the
    solver lands exactly, and integrated over t by the trapezoid rule. Every flow from q_0 to q_1 has
    ``PE >= W2^2(q_0, q_1)``, with equality for the OT flow (Benamou-Brenier)."""
    from fmexp.flow.reflow import along_trajectories

    t, _, field = along_trajectories(v, x_0, times=times, rtol=rtol, atol=atol)
    speed = field.flatten(2).pow(2).sum(2)  # (T, B)
    return float(torch.trapezoid(speed.mean(1).double(), t.double()))


def normalized_path_energy(energy: float, w2_squared: float) -> float:
    """``NPE = |PE - W2^2(q_0, q_1)| / W2^2(q_0, q_1)`` (Tong et al. 2023, eq. 21): 0 for the OT flow."""
    return abs(energy - w2_squared) / w2_squared


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


def fid_infinity(
    features: np.ndarray,
    mu_ref: np.ndarray,
    sigma_ref: np.ndarray,
    sizes: list[int],
    repeats: int,
    rng: np.random.Generator,
) -> tuple[float, dict[int, tuple[float, float]]]:
    """FID extrapolated to infinitely many samples (Chong and Forsyth 2020, "FID_inf"): FID's bias falls
    as 1/n, so the mean FID of ``repeats`` subsets of each size in ``sizes``, drawn without replacement
    from ``features``, is fitted by least squares as ``FID_n = FID_inf + k / n``, and the intercept
    returned, with each size's (mean, std) FID over its subsets."""
    if len(set(sizes)) < 2 or max(sizes) > len(features) or min(sizes) < 2:
        raise ValueError(f"need two or more sizes in [2, {len(features)}], got {sizes}")
    at: dict[int, tuple[float, float]] = {}
    for n in sorted(set(sizes)):
        draws = [
            features[rng.choice(len(features), n, replace=False)] for _ in range(repeats if n < len(features) else 1)
        ]
        fids = [frechet_distance(*gaussian_stats(f), mu_ref, sigma_ref) for f in draws]
        at[n] = (float(np.mean(fids)), float(np.std(fids, ddof=1)) if len(fids) > 1 else 0.0)
    inverse = np.array([1.0 / n for n in at])
    slope, intercept = np.polyfit(inverse, np.array([m for m, _ in at.values()]), 1)
    return float(intercept), at


FLOOR_SUBSETS = 20
"""Subsets of the held-out images whose FIDs give the floor's noise (``fid_scores``)."""
INF_REPEATS = 5
"""Subsets per size in the 1/n extrapolation of FID (``fid_infinity``)."""
MIN_FIT = 8
"""The fewest images that ``fid_scores`` extrapolates from (6 sizes from n/2 to n)."""


def _sizes(n: int, k: int = 6) -> list[int]:
    """``k`` subset sizes from n/2 to n, for ``fid_infinity``."""
    return sorted({int(round(x)) for x in np.linspace(n / 2, n, k)})


def _spread(key: str, values: list[float], of: str) -> dict[str, float | str | None]:
    """``{key: the std (ddof 1) of a few FIDs}``; for fewer than two, null with the reason beside it."""
    if len(values) > 1:
        return {key: float(np.std(values, ddof=1))}
    return {key: None, f"{key}_reason": f"{len(values)} {of}: a spread needs two"}


def fid_scores(
    generated: np.ndarray, real: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray, rng: np.random.Generator
) -> dict[str, float | str | None]:
    """FIDs of the ``generated`` features and the ``real`` held-out ones against the reference Gaussian
    (the training split), at equal n. FID's bias falls as 1/n, so only figures at equal n compare.

    - ``fid``: all ``fid_n`` generated samples, the headline.
    - ``fid_floor``: the first ``fid_floor_n`` real images, at most as many as were generated: the floor
      to read a model's FID against. ``fid_equal_n``: the mean FID of the ``fid_draws`` disjoint draws of
      that many samples, the model's FID at the floor's n; ``fid_draw_std``: their spread.
    - ``fid_floor_std``: the floor's noise, the std of the FID of ``fid_floor_std_n`` real images (half),
      subsampled without replacement ``FLOOR_SUBSETS`` times.
    - ``fid_inf`` and ``fid_floor_inf``: both extrapolated in 1/n (``fid_infinity``), the n-free figures.
    - ``fid_heldout``: the draws against the real images' own Gaussian (their mean).
    """

    def fid(f: np.ndarray) -> float:
        return frechet_distance(*gaussian_stats(f), mu_ref, sigma_ref)

    m = min(len(generated), len(real))
    draws = [generated[i : i + m] for i in range(0, len(generated) - m + 1, m)]
    fids = [fid(f) for f in draws]
    half = m // 2
    floors = [fid(real[rng.choice(len(real), half, replace=False)]) for _ in range(FLOOR_SUBSETS if half > 1 else 0)]
    extrapolated: dict[str, float | str | None] = {}
    for key, f in (("fid_inf", generated), ("fid_floor_inf", real[:m])):
        if len(f) >= MIN_FIT:
            extrapolated[key] = fid_infinity(f, mu_ref, sigma_ref, _sizes(len(f)), INF_REPEATS, rng)[0]
        else:
            extrapolated |= {key: None, f"{key}_reason": f"{len(f)} images: the 1/n fit needs {MIN_FIT}"}
    heldout = gaussian_stats(real)
    return {
        "fid": fid(generated),
        "fid_n": len(generated),
        "fid_equal_n": float(np.mean(fids)),
        "fid_draws": len(fids),
        **_spread("fid_draw_std", fids, "draws"),
        "fid_floor": fid(real[:m]),
        "fid_floor_n": m,
        **_spread("fid_floor_std", floors, "held-out subsets"),
        "fid_floor_std_n": half,
        **extrapolated,
        "fid_heldout": float(np.mean([frechet_distance(*gaussian_stats(f), *heldout) for f in draws])),
    }
