"""Every path's flow, field and endpoints against autograd and the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from fmexp.flow.paths import VPPath, get_path
from fmexp.registry import names
from tests.closed_forms import make_path

T_INTERIOR = torch.tensor([0.01, 0.2, 0.5, 0.8, 0.99], dtype=torch.float64)


def test_field_is_time_derivative_of_flow(path_name: str) -> None:
    """``u_t(psi_t(x_0) | x_1) = d/dt psi_t(x_0)`` (Thm. 3), with d/dt by autograd in float64."""
    path = make_path(path_name)
    gen = torch.Generator().manual_seed(0)
    x_0 = torch.randn(len(T_INTERIOR), 3, generator=gen, dtype=torch.float64)
    x_1 = torch.randn(len(T_INTERIOR), 3, generator=gen, dtype=torch.float64) * 2 + 1
    t = T_INTERIOR.clone().requires_grad_(True)
    psi = path.psi(x_0, x_1, t)
    dpsi_dt = torch.stack([torch.autograd.grad(psi[:, j].sum(), t, retain_graph=True)[0] for j in range(3)], dim=1)
    sample = path.sample(x_0, x_1, T_INTERIOR)
    torch.testing.assert_close(sample.x_t, psi.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sample.u_t, dpsi_dt, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(path.u(sample.x_t, x_1, T_INTERIOR), dpsi_dt, rtol=1e-8, atol=1e-8)


def test_std_at_t1_is_sigma_min(path_name: str) -> None:
    path = make_path(path_name)
    x_1 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    mu, sigma = path.mu_sigma(x_1, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(sigma.squeeze(1), torch.full((4,), 0.05, dtype=torch.float64), rtol=1e-10, atol=0)
    a_1 = math.sqrt(1 - 0.05**2) if path_name == "vp" else 1.0  # VP: alpha^2 + sigma^2 = 1
    torch.testing.assert_close(mu, a_1 * x_1, rtol=1e-12, atol=0)


def test_source_at_t0() -> None:
    x_1 = torch.randn(3, 2, dtype=torch.float64)
    t0 = torch.zeros(3, dtype=torch.float64)
    mu, sigma = get_path("ot", sigma_min=0.05).mu_sigma(x_1, t0)
    assert torch.equal(mu, torch.zeros_like(x_1)) and torch.all(sigma == 1)
    mu, sigma = get_path("ve", sigma_min=0.05, sigma_max=8.0).mu_sigma(x_1, t0)
    assert torch.equal(mu, x_1)
    torch.testing.assert_close(sigma, torch.full_like(sigma, 8.0), rtol=1e-12, atol=0)
    # VP at t=0 is diffusion time s=1: alpha_1 = exp(-(beta_min + (beta_max - beta_min)/2)/2) = exp(-5.025).
    alpha_1 = math.exp(-0.5 * (0.1 + 19.9 / 2))
    mu, sigma = get_path("vp", sigma_min=0.05).mu_sigma(x_1, t0)
    torch.testing.assert_close(mu, alpha_1 * x_1, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma, torch.full_like(sigma, math.sqrt(1 - alpha_1**2)), rtol=1e-12, atol=0)


def test_vp_truncation_solves_for_sigma_min() -> None:
    """T(s_min) = -log(1 - sigma_min^2) with T(s) = 0.1 s + 19.9 s^2 / 2, checked by the plain quadratic formula."""
    for sigma_min in (1e-1, 1e-3, 1e-5):
        path = VPPath(sigma_min=sigma_min)
        target = -math.log(1 - sigma_min**2)
        s_plain = (-0.1 + math.sqrt(0.01 + 2 * 19.9 * target)) / 19.9
        assert path.s_min == pytest.approx(s_plain, rel=1e-6)


def test_ot_is_the_papers_condot() -> None:
    """psi_t(x_0) = (1 - (1 - sigma_min) t) x_0 + t x_1 and target x_1 - (1 - sigma_min) x_0 (eqs. 22-23)."""
    path = get_path("ot", sigma_min=1e-4)
    x_0, x_1, t = torch.randn(5, 2), torch.randn(5, 2), torch.rand(5)
    s = path.sample(x_0, x_1, t)
    torch.testing.assert_close(s.x_t, (1 - (1 - 1e-4) * t[:, None]) * x_0 + t[:, None] * x_1)
    torch.testing.assert_close(s.u_t, x_1 - (1 - 1e-4) * x_0)


def test_registry_and_errors() -> None:
    assert set(names("path")) == {"ot", "vp", "ve", "cosine", "polynomial", "linear_vp", "bridge", "brownian_bridge"}
    with pytest.raises(
        ValueError,
        match=r"path: 'otp' is not one of \['bridge', 'brownian_bridge', 'cosine', 'linear_vp', 'ot', 'polynomial',"
        r" 've', 'vp'\]",
    ):
        get_path("otp")
    with pytest.raises(ValueError, match="sigma_min"):
        get_path("ot", sigma_min=-1e-3)
    with pytest.raises(ValueError, match="sigma_max"):
        get_path("ve", sigma_min=1.0, sigma_max=0.5)


def test_the_family_against_its_definitions() -> None:
    """Polynomial of power 1 is the OT path; cosine and linear-VP follow their formulas; linear-VP's
    dsigma/dt at t = 1 is -(1 - sigma_min^2) / sigma_min, finite; and powers below 1 are allowed."""
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for a, b in zip(get_path("polynomial", power=1.0).schedule(t), get_path("ot").schedule(t), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    a, sigma, _, _ = get_path("cosine", sigma_min=0.01).schedule(t)
    torch.testing.assert_close(a, torch.sin(math.pi * t / 2))
    torch.testing.assert_close(sigma, 0.01 + 0.99 * torch.cos(math.pi * t / 2))
    _, sigma, _, dsigma = get_path("linear_vp", sigma_min=0.01).schedule(torch.ones(1, dtype=torch.float64))
    assert float(sigma) == pytest.approx(0.01) and float(dsigma) == pytest.approx(-(1 - 1e-4) / 0.01)
    with pytest.raises(ValueError, match="finite"):
        get_path("linear_vp", sigma_min=0.0)
    with pytest.raises(ValueError, match="power > 0"):
        get_path("polynomial", power=0.0)


@pytest.mark.parametrize("name", ["cosine", "polynomial", "linear_vp"])
def test_score_matching_is_refused_where_the_source_holds_no_data(name: str) -> None:
    """These paths start at a_0 = 0, like OT: the probability-flow conversion divides by a_t."""
    from fmexp.errors import ConfigError
    from fmexp.flow.methods import make_method

    with pytest.raises(ConfigError, match="a_0 = 0"):
        make_method("sm", name)


def test_sample_shapes_on_images(path_name: str) -> None:
    path = make_path(path_name)
    x_0, x_1, t = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.rand(4)
    s = path.sample(x_0, x_1, t)
    assert s.x_t.shape == s.u_t.shape == (4, 1, 8, 8)


@pytest.mark.parametrize("data_std", [0.5, 2.5])
def test_input_scale_keeps_the_noise_within_the_datas_or_the_sources_scale(path_name: str, data_std: float) -> None:
    """OT and VP have sigma_t <= 1: their inputs are x_t itself, c_t = 1 exactly (so their numbers cannot
    move). VE's sigma_t grows to sigma_max: c_t sigma_t = max(1, s) wherever sigma_t exceeds that, and by
    Monte Carlo the scaled input's std at t = 0 is sqrt(r^2 + (r s / sigma_max)^2), r = max(1, s)
    (n = 200k: the std's relative standard error is 0.16%)."""
    path, r = make_path(path_name), max(1.0, data_std)
    beyond = path.input_scale(torch.tensor([-1e-3, 1.0 + 1e-3], dtype=torch.float64), data_std)
    ends = path.input_scale(torch.tensor([0.0, 1.0], dtype=torch.float64), data_std)
    assert torch.equal(beyond, ends)  # dopri5 steps past t = 1 and interpolates back; VP's std is NaN there
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    c = path.input_scale(t, data_std)
    _, sigma, _, _ = path.schedule(t)
    if path_name != "ve":
        assert torch.equal(c, torch.ones_like(c))
        return
    torch.testing.assert_close(c, torch.where(sigma > r, r / sigma, torch.ones_like(sigma)), rtol=1e-12, atol=0)
    gen = torch.Generator().manual_seed(0)
    x_0 = torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    x_1 = data_std * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    t0 = torch.zeros(200_000, dtype=torch.float64)
    scaled = path.input_scale(t0, data_std)[:, None] * path.sample(x_0, x_1, t0).x_t
    sigma_max = float(path.schedule(t0[:1])[1])
    assert float(scaled.std()) == pytest.approx(math.hypot(r, r * data_std / sigma_max), rel=0.01)


def test_a_method_with_data_std_feeds_the_network_the_scaled_input() -> None:
    """VE's source N(0, sigma_max^2): at t=0 the network sees x max(1, s) / sigma_max; without data_std,
    x_t unchanged."""
    from fmexp.flow.methods import make_method

    seen = []

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros_like(x)

    x, s = torch.ones(3, 2), 2.0
    for data_std in (s, None):
        method = make_method("fm", "ve", data_std=data_std, sigma_min=1e-2, sigma_max=20.0)
        method.velocity(net)(x, torch.zeros(3))
    assert torch.allclose(seen[0], x * s / 20.0) and torch.equal(seen[1], x)
