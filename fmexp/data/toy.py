"""2-D toy distributions: the paper's Fig. 4 checkerboard and the usual CNF benchmarks.

Each is a generator ``(n, rng) -> (n, 2) float array``, registered as a ``toy_dataset``
(``fmexp.registry``); two have a closed-form density, whose entropy is the floor of a model's NLL.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmexp.registry import resolve

__all__ = [
    "checkerboard",
    "eight_gaussians",
    "moons",
    "circles",
    "two_spirals",
    "swissroll",
    "eight_gaussians_tcfm",
    "moons_tcfm",
    "LOG_DENSITIES",
    "entropy",
]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """8 squares of side 2 on [-4, 4]^2 (Grathwohl et al. 2019; the paper's Fig. 4); entropy log 32."""
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], axis=1)


def eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """Eight Gaussians of std 0.5/sqrt(2) on a circle of radius 4/sqrt(2)."""
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centers + 0.5 * rng.standard_normal((n, 2))) / np.sqrt(2)


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved half circles (scikit-learn), centred and scaled to about [-4, 4]."""
    from sklearn.datasets import (
        make_moons,  # imported here: scikit-learn takes ~2 s to import
    )

    x, _ = make_moons(n, noise=0.05, random_state=_seed(rng))
    return 2 * (x - np.array([0.5, 0.25])) * 1.5


def circles(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two concentric circles (scikit-learn), radii 3 and 1.5."""
    from sklearn.datasets import make_circles

    x, _ = make_circles(n, factor=0.5, noise=0.08, random_state=_seed(rng))
    return 3 * x


def two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved spirals (Grathwohl et al. 2019)."""
    r = np.sqrt(rng.uniform(0, 1, n)) * 540 * (2 * np.pi) / 360
    sign = np.where(rng.integers(0, 2, n) == 0, 1.0, -1.0)
    xy = sign[:, None] * np.stack([-np.cos(r) * r, np.sin(r) * r], axis=1)
    return xy / 3 + 0.1 * rng.standard_normal((n, 2))


def swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """The swiss roll (scikit-learn) seen from above, scaled to about [-4, 4]."""
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=1.0, random_state=_seed(rng))
    return x[:, [0, 2]] / 3


def eight_gaussians_tcfm(n: int, rng: np.random.Generator) -> np.ndarray:
    """torchcfm's ``sample_8gaussians`` (Tong et al. 2023's 2-D benchmark): eight equal Gaussians at radius 5
    on the axes and diagonals, covariance ``sqrt(0.1) I`` (its ``eight_normal_sample(n, 2, scale=5,
    var=0.1)`` passes ``sqrt(var) I`` as the covariance, so the std is ``0.1 ** 0.25``, about 0.56)."""
    angles = np.pi * rng.integers(0, 8, n) / 4
    centers = 5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centers + 0.1**0.25 * rng.standard_normal((n, 2))


def moons_tcfm(n: int, rng: np.random.Generator) -> np.ndarray:
    """torchcfm's ``sample_moons``: torchdyn's ``generate_moons(n, noise=0.2)`` times 3, minus 1. Its points
    lie at evenly spaced angles on the two half circles (n // 2 on the outer), each shifted by one
    uniform draw in [0, 0.2) along the diagonal (the same amount on both coordinates), in order; here
    they are shuffled, for minibatches and splits."""
    n_out = n // 2
    outer, inner = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n - n_out)
    x = np.concatenate([np.cos(outer), 1 - np.cos(inner)])
    y = np.concatenate([np.sin(outer), 1 - np.sin(inner) - 0.5])
    points = np.stack([x, y], axis=1) + 0.2 * rng.uniform(0, 1, (n, 1))
    return 3 * points[rng.permutation(n)] - 1


def _checkerboard_log_density(x: np.ndarray) -> np.ndarray:
    """Uniform on 8 squares of side 2, total area 32."""
    inside = (np.abs(x) <= 4).all(1) & ((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0)
    return np.where(inside, -np.log(32.0), -np.inf)


def _eight_gaussians_log_density(x: np.ndarray) -> np.ndarray:
    """The equal-weight mixture of ``eight_gaussians``, in closed form."""
    from scipy.special import logsumexp

    angles = 2 * np.pi * np.arange(8) / 8
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1) / np.sqrt(2)
    var = (0.5 / np.sqrt(2)) ** 2
    sq = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    return logsumexp(-0.5 * sq / var, axis=1) - np.log(8) - np.log(2 * np.pi * var)


LOG_DENSITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "checkerboard": _checkerboard_log_density,
    "8gaussians": _eight_gaussians_log_density,
}


def entropy(name: str, n: int = 1_000_000, seed: int = 0) -> tuple[float, float]:
    """The data's differential entropy in nats, ``-E log q(x)``, and its Monte Carlo standard error: the
    floor of a model's NLL. Computed from the closed-form density of the datasets in ``LOG_DENSITIES``
    (checkerboard: exactly log 32, standard error 0)."""
    try:
        log_q = LOG_DENSITIES[name]
    except KeyError:
        raise ValueError(f"no closed-form density for {name!r}; known: {sorted(LOG_DENSITIES)}") from None
    values = log_q(resolve("toy_dataset", name)(n, np.random.default_rng(seed)))
    return float(-values.mean()), float(values.std() / np.sqrt(n))
