from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmexp.flow.metrics import (
    bits_per_dim,
    fid_infinity,
    fid_scores,
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


def _gaussian(d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.zeros(d), a @ a.T + 0.5 * np.eye(d), rng


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_infinity_removes_the_small_sample_bias(seed: int) -> None:
    """Draws from the reference Gaussian itself: their FID is 0 in the limit, and at n it is all bias
    (about tr(sigma)/n from the mean alone, more from the covariance). The 1/n fit removes most of it."""
    mu, sigma, rng = _gaussian(32, seed)
    f = rng.multivariate_normal(mu, sigma, size=1000)
    at_n = frechet_distance(*gaussian_stats(f), mu, sigma)
    assert at_n > np.trace(sigma) / 1000  # the mean term's expected bias is a lower bound
    fid_inf, at = fid_infinity(f, mu, sigma, [500, 600, 700, 800, 900, 1000], 5, rng)
    assert abs(fid_inf) < at_n / 4
    assert at[500][0] > at[1000][0]  # the bias falls with n
    with pytest.raises(ValueError, match="two or more sizes"):
        fid_infinity(f, mu, sigma, [1000], 5, rng)


def test_fid_scores_compare_samples_and_floor_at_equal_n() -> None:
    """Three times as many samples as real images: three disjoint draws at the floor's n; the headline FID
    is over all samples, so less biased than a draw's; the floor's noise comes from half-size subsets."""
    mu, sigma, rng = _gaussian(8, 0)
    generated, real = rng.multivariate_normal(mu, sigma, size=600), rng.multivariate_normal(mu, sigma, size=200)
    out = fid_scores(generated, real, mu, sigma, np.random.default_rng(0))
    draws = [frechet_distance(*gaussian_stats(generated[i : i + 200]), mu, sigma) for i in (0, 200, 400)]
    assert (out["fid_n"], out["fid_draws"], out["fid_floor_n"], out["fid_floor_std_n"]) == (600, 3, 200, 100)
    assert out["fid_equal_n"] == pytest.approx(np.mean(draws), rel=1e-12)
    assert out["fid_draw_std"] == pytest.approx(np.std(draws, ddof=1), rel=1e-12)
    assert out["fid_floor"] == pytest.approx(frechet_distance(*gaussian_stats(real), mu, sigma), rel=1e-12)
    assert out["fid"] < out["fid_equal_n"]  # all samples from the reference: only bias, smaller at 3x the n
    assert out["fid_floor_std"] > 0 and out["fid_inf"] is not None and out["fid_floor_inf"] is not None
    few = fid_scores(generated[:6], real[:6], mu, sigma, np.random.default_rng(0))
    assert few["fid_inf"] is None and "the 1/n fit needs 8" in str(few["fid_inf_reason"])
