"""Losses and the score-to-velocity conversion against the closed-form Gaussian marginal."""

from __future__ import annotations

import pytest
import torch

from fmexp.flow.losses import cfm_loss, dsm_loss, epsilon_to_velocity, score_to_velocity
from fmexp.flow.methods import make_method
from tests.closed_forms import GaussianMarginal, make_path

M = torch.tensor([1.5, -0.5], dtype=torch.float64)
S = 0.7


def exact_epsilon(marginal: GaussianMarginal):
    """E[x_0 | x_t = x] = sigma_t (x - M_t) / S_t^2 for Gaussian data (joint Gaussian conditioning)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mean, std = marginal.mean_std(t)
        _, sigma, _, _ = marginal.path.schedule(t)
        return sigma[:, None] * (x - mean) / std**2

    return eps


def draws(path, n: int = 20_000, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x_0 = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x_1 = M + S * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    return path.sample(x_0, x_1, t)


def test_cfm_loss_is_minimized_by_the_marginal_field(path_name: str) -> None:
    """L_CFM(v) = L_CFM(u) + E||v - u||^2 (Thm. 2), so any perturbation of u raises it."""
    marginal = GaussianMarginal(make_path(path_name), m=M, s=S)
    sample = draws(marginal.path)
    best = cfm_loss(marginal.field, sample).mean()
    assert cfm_loss(marginal.field, sample).shape == (len(sample.t),)
    for delta in (
        lambda x, t: 0.3 * torch.ones_like(x),
        lambda x, t: 0.2 * x,
        lambda x, t: 0.2 * torch.sin(3 * x) * t[:, None],
    ):
        perturbed = cfm_loss(lambda x, t: marginal.field(x, t) + delta(x, t), sample).mean()
        assert perturbed > best


def test_dsm_loss_is_minimized_by_the_exact_noise_predictor(path_name: str) -> None:
    marginal = GaussianMarginal(make_path(path_name), m=M, s=S)
    sample = draws(marginal.path)
    eps = exact_epsilon(marginal)
    best = dsm_loss(eps, sample).mean()
    for scale in (0.9, 1.1):
        assert dsm_loss(lambda x, t: scale * eps(x, t), sample).mean() > best
    assert dsm_loss(lambda x, t: eps(x, t) + 0.1, sample).mean() > best


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_probability_flow_of_exact_noise_predictor_is_the_marginal_field(name: str) -> None:
    """u_t(x) = (a'/a) x + (sigma' - a' sigma / a) E[x_0|x] must equal the Gaussian marginal's field."""
    marginal = GaussianMarginal(make_path(name), m=M, s=S)
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    t = torch.linspace(0.0, 1.0, 64, dtype=torch.float64)
    torch.testing.assert_close(epsilon_to_velocity(exact_epsilon(marginal), marginal.path)(x, t), marginal.field(x, t))

    # the same through a score model, score = -E[x_0|x] / sigma_t
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -exact_epsilon(marginal)(x, t) / marginal.path.schedule(t)[1][:, None]

    torch.testing.assert_close(score_to_velocity(score, marginal.path)(x, t), marginal.field(x, t))


def test_score_matching_needs_a_positive_data_coefficient_at_t0() -> None:
    with pytest.raises(ValueError, match="'sm' needs"):
        make_method("sm", "ot")
    with pytest.raises(ValueError, match=r"unknown objective 'fmx'"):
        make_method("fmx", "ot")
    assert make_method("sm", "vp").objective == "sm"
