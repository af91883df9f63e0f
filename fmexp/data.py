"""Datasets: 2-D toy distributions (the paper's Fig. 4 checkerboard and the usual CNF benchmarks).

Each dataset is a registered generator ``(n, rng) -> (n, d) float32 array``. ``load_dataset`` draws
the train and test splits from two independent streams of one seed, so the test split is fixed
whatever the train size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from fmexp.registry import check_name

__all__ = ["Dataset", "DATASETS", "LOG_DENSITIES", "load_dataset", "entropy", "max_pairwise_distance"]

Generator2D = Callable[[int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Dataset:
    """A dataset's two fixed splits, as float32 tensors of shape ``(n, ...)``.

    ``levels`` is None for continuous data. For images it is the number of intensity levels: the
    splits then hold integer levels, and ``model_space`` dequantizes them to [-1, 1) (``fmexp.images``).
    """

    name: str
    train: Tensor
    test: Tensor
    levels: int | None = None

    @property
    def dim(self) -> int:
        return self.train[0].numel()

    def model_space(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """What the model sees: ``x`` itself, or for images a fresh uniform dequantization of it."""
        if self.levels is None:
            return x
        from fmexp.images import dequantize

        return dequantize(x, self.levels, generator)

    def stored(self, y: Tensor) -> Tensor:
        """Samples ``y`` in model space as the sample stage keeps them: as they are, or for images their
        integer levels in one byte each (a quarter of float32's size)."""
        if self.levels is None:
            return y
        from fmexp.images import to_uint8

        return to_uint8(y, self.levels)

    def unstored(self, x: Tensor) -> Tensor:
        """Stored samples back in model space: as they are, or for images the centres of their levels."""
        if self.levels is None:
            return x
        from fmexp.images import level_centres

        return level_centres(x, self.levels)


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
    from sklearn.datasets import make_moons  # imported here: scikit-learn takes ~2 s to import

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


DATASETS: dict[str, Generator2D] = {
    "checkerboard": checkerboard,
    "8gaussians": eight_gaussians,
    "moons": moons,
    "circles": circles,
    "2spirals": two_spirals,
    "swissroll": swissroll,
}


def load_dataset(name: str, n_train: int = 50_000, n_test: int = 5_000, seed: int = 0, **image_args: object) -> Dataset:
    """The dataset ``name``: a 2-D generator of ``DATASETS`` (splits from independent streams of
    ``seed``, sizes ``n_train`` and ``n_test``), or an image dataset of ``fmexp.images.IMAGE_DATASETS``
    (its own fixed split; ``image_args`` are ``root``, ``size``, ``channels``, ``download``)."""
    from fmexp.images import IMAGE_DATASETS, load_images

    if name in IMAGE_DATASETS:
        splits = load_images(name, seed=seed, **image_args)  # type: ignore[arg-type]
        return Dataset(name=name, train=splits.train, test=splits.test, levels=splits.levels)
    check_name("dataset", name, [*DATASETS, *IMAGE_DATASETS])
    make = DATASETS[name]
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train = torch.from_numpy(make(n_train, train_rng).astype(np.float32))
    test = torch.from_numpy(make(n_test, test_rng).astype(np.float32))
    return Dataset(name=name, train=train, test=test)


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
    values = log_q(DATASETS[name](n, np.random.default_rng(seed)))
    return float(-values.mean()), float(values.std() / np.sqrt(n))


def max_pairwise_distance(x: Tensor, max_points: int = 4096) -> float:
    """The largest distance between two points (of the first ``max_points``): the VE path's ``sigma_max`` rule."""
    x = x[:max_points].flatten(1).double()
    return float(torch.cdist(x, x).max())
