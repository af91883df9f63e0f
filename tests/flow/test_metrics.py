from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmexp.flow.metrics import (
    bits_per_dim,
    frechet_distance,
    gaussian_stats,
    sample_distance,
)
from fmexp.registry import names


def test_bits_per_dim_of_uniform_dequantized_bytes_is_eight() -> None:
    """Bytes dequantized to [0, 256) and mapped to [-1, 1): a uniform model has density 1/2 per dim,
    so nll_y = d log 2 and the byte-level NLL is log2(256) = 8 bits per dimension."""
    d = 3 * 32 * 32
    assert bits_per_dim(d * math.log(2.0), d, scale=2 / 256) == pytest.approx(8.0)
    assert bits_per_dim(torch.tensor([d * math.log(2.0)]), d, scale=2 / 256).item() == pytest.approx(8.0)
    assert bits_per_dim(2 * math.log(2.0), 2) == pytest.approx(1.0)  # plain nats -> bits


@pytest.mark.parametrize("name", names("distance"))
def test_distances_are_zero_on_identical_samples_and_see_a_shift(name: str) -> None:
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert sample_distance(name, x, x) == pytest.approx(0.0, abs=1e-9)
    shifted = sample_distance(name, x, x + torch.tensor([3.0, 0.0]))
    # exact W2 of a translation by 3 is 3; a sliced W2 averages the projected shifts: 3 * sqrt(E cos^2) = 3/sqrt(2)
    expected = 3.0 if name == "w2" else 3.0 / math.sqrt(2)
    assert shifted == pytest.approx(expected, rel=0.1)


def test_unknown_distance() -> None:
    with pytest.raises(ValueError, match="unknown distance 'mmd'"):
        sample_distance("mmd", torch.zeros(2, 2), torch.zeros(2, 2))


def _reference_frechet(mu1, s1, mu2, s2) -> float:
    """Independent route: tr (s1 s2)^{1/2} = sum of square roots of the eigenvalues of s1 s2 (real, >= 0)."""
    eig = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


@pytest.mark.parametrize("rank", [16, 12, 3])  # full rank, and near-singular / rank-deficient covariances
def test_frechet_distance_matches_an_independent_reference(rank: int) -> None:
    rng = np.random.default_rng(rank)
    d = 16
    for _ in range(5):
        a, b = rng.standard_normal((d, rank)), rng.standard_normal((d, rank))
        s1, s2 = a @ a.T + 1e-9 * np.eye(d), b @ b.T + 1e-9 * np.eye(d)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        got, ref = frechet_distance(mu1, s1, mu2, s2), _reference_frechet(mu1, s1, mu2, s2)
        assert got == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_closed_forms() -> None:
    # identical Gaussians: 0; isotropic with scales a, b in d dims: ||dmu||^2 + d (a - b)^2
    s = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(np.zeros(3), s, np.zeros(3), s) == pytest.approx(0.0, abs=1e-10)
    got = frechet_distance(np.zeros(4), 4 * np.eye(4), np.ones(4), 9 * np.eye(4))
    assert got == pytest.approx(4 + 4 * (2 - 3) ** 2)
    mu, cov = gaussian_stats(torch.randn(5000, 3, generator=torch.Generator().manual_seed(0)))
    assert mu.shape == (3,) and cov.shape == (3, 3) and np.allclose(cov, np.eye(3), atol=0.1)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
