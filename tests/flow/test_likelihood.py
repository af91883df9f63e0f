"""log_likelihood against closed forms: a linear field and the Gaussian marginal of every path."""

from __future__ import annotations

import math

import pytest
import torch

from fmexp.flow.likelihood import (
    gaussian_log_prob,
    log_likelihood,
    log_mean_likelihood,
    velocity_and_divergence,
)
from tests.closed_forms import LOG_2PI, Counter, GaussianMarginal, make_path

# Non-symmetric, with A_12 + A_21 != 0 so that Rademacher probes z^T A z actually vary.
A = torch.tensor([[-0.5, 1.0], [-0.4, -0.2]], dtype=torch.float64)


def linear(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x @ A.T


def linear_logp(x_1: torch.Tensor) -> torch.Tensor:
    """x_1 = expm(A) x_0 with x_0 ~ N(0, I): log p(x_1) = log N(expm(-A) x_1; 0, I) - tr A."""
    x_0 = x_1 @ torch.linalg.matrix_exp(-A).T
    return -0.5 * (x_0**2).sum(1) - LOG_2PI - torch.trace(A)


def test_exact_divergence_of_linear_field() -> None:
    x_1 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = Counter(linear)
    res = log_likelihood(v, x_1, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(res.logp, linear_logp(x_1), rtol=1e-7, atol=1e-7)
    assert res.nfe == v.calls


@pytest.mark.parametrize("t", [0.0, 0.3, 0.75])
def test_density_at_time_t_of_linear_field(t: float) -> None:
    """x_t = expm(A t) x_0: log p_t(x) = log N(expm(-A t) x; 0, I) - t tr A (the Fig. 4 densities)."""
    x_t = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = Counter(linear)
    res = log_likelihood(v, x_t, rtol=1e-9, atol=1e-9, t=t)
    x_0 = x_t @ torch.linalg.matrix_exp(-A * t).T
    torch.testing.assert_close(res.logp, -0.5 * (x_0**2).sum(1) - LOG_2PI - t * torch.trace(A), rtol=1e-7, atol=1e-7)
    assert res.nfe == v.calls and (t > 0 or v.calls == 0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_three_standard_errors(probe: str) -> None:
    n = 4000
    x_1 = torch.tensor([[0.3, -1.2]], dtype=torch.float64).expand(n, 2).contiguous()
    gen = torch.Generator().manual_seed(1)
    res = log_likelihood(linear, x_1, divergence="hutchinson", probe=probe, generator=gen, rtol=1e-8, atol=1e-8)
    exact = float(linear_logp(x_1[:1]))
    mean, se = float(res.logp.mean()), float(res.logp.std() / math.sqrt(n))
    assert se > 0  # probes vary per sample
    assert abs(mean - exact) < 3 * se, (mean, exact, se)


@pytest.mark.parametrize("k", [1, 4])
def test_hutchinson_error_with_k_probes_has_its_closed_form(k: int) -> None:
    """For the linear field, z^T A z = tr A + (A_12 + A_21) z_1 z_2 with a Rademacher z, held over the
    solve: one probe misses log p by exactly +-0.6; the mean of K probes has std 0.6 / sqrt(K)."""
    n = 4000
    x_1 = torch.randn(n, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = log_likelihood(
        linear, x_1, divergence="hutchinson", probes=k, generator=torch.Generator().manual_seed(4), rtol=1e-9, atol=1e-9
    )
    error = res.logp - linear_logp(x_1)
    off_diagonal = float(A[0, 1] + A[1, 0])
    if k == 1:
        torch.testing.assert_close(error.abs(), torch.full_like(error, abs(off_diagonal)), rtol=0, atol=1e-6)
    assert float(error.std()) == pytest.approx(abs(off_diagonal) / math.sqrt(k), rel=0.05)
    assert abs(float(error.mean())) < 4 * abs(off_diagonal) / math.sqrt(k * n)


@pytest.mark.slow
def test_hutchinson_agrees_with_the_exact_divergence_on_digits() -> None:
    """Digits (64 dims) under a random U-Net: the Hutchinson log-likelihood is unbiased against the
    exact one, and 16 probes cut the spread of its error by about sqrt(16) = 4."""
    from fmexp.data.images import dequantize, load_digits
    from fmexp.networks.models import build_model

    torch.manual_seed(0)
    net = build_model("unet", in_channels=1, resolution=8, channels=8, channel_mults=[1, 2], time_embed_dim=8).double()
    for p in net.parameters():  # conv_out starts at zero (v = 0); a random field has a real Jacobian
        torch.nn.init.normal_(p, std=0.1)
    x_1 = dequantize(
        load_digits().train[:32].double(), 17, torch.Generator().manual_seed(0)
    )  # as the pipeline sees them
    kwargs = {"rtol": 1e-6, "atol": 1e-6}
    with torch.no_grad():
        exact = log_likelihood(net, x_1, **kwargs).logp
        errors = {
            k: log_likelihood(
                net, x_1, divergence="hutchinson", probes=k, generator=torch.Generator().manual_seed(k), **kwargs
            ).logp
            - exact
            for k in (1, 16)
        }
    for k, error in errors.items():
        assert abs(float(error.mean())) < 4 * float(error.std()) / math.sqrt(len(error)), (k, error)
    assert float(errors[1].std()) > 1e-3  # the probe matters for this field
    assert float(errors[16].std()) < 0.5 * float(errors[1].std())


def test_hutchinson_probe_is_reproducible() -> None:
    x_1 = torch.randn(8, 2, dtype=torch.float64)
    a = log_likelihood(linear, x_1, divergence="hutchinson", generator=torch.Generator().manual_seed(3))
    b = log_likelihood(linear, x_1, divergence="hutchinson", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.logp, b.logp)


def test_exact_divergence_matches_autograd_jacobian_at_64_dims() -> None:
    """A nonlinear field on 64 dims: trace of torch.autograd.functional.jacobian, one sample at a time."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(65, 128), torch.nn.Tanh(), torch.nn.Linear(128, 64)).double()

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([x, t[:, None]], 1))

    x, t = torch.randn(5, 64, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    out, div = velocity_and_divergence(v, x, t)
    div = div.detach()
    torch.testing.assert_close(out, v(x, t))
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda y: v(y[None], t[i : i + 1])[0], x[i])
        assert float(div[i]) == pytest.approx(float(torch.trace(jac)), rel=1e-10, abs=1e-10), (
            float(div[i]),
            float(torch.trace(jac)),
        )


def test_gaussian_marginal_log_likelihood(path_name: str) -> None:
    """Under the exact marginal field the flow is affine: x(0) = M_0 + (S_0/S_1)(x_1 - M_1), so
    log p_1(x_1) = log N(x(0); 0, prior_std^2 I) + d log(S_0 / S_1)."""
    path = make_path(path_name)
    marginal = GaussianMarginal(path, m=torch.tensor([1.5, -0.5], dtype=torch.float64), s=0.7)
    (m0, s0), (m1, s1) = (marginal.mean_std(torch.full((1,), t, dtype=torch.float64)) for t in (0.0, 1.0))
    x_1 = m1 + s1 * torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    res = log_likelihood(marginal.field, x_1, prior_std=path.prior_std, rtol=1e-8, atol=1e-8)
    x_0 = m0 + s0 / s1 * (x_1 - m1)
    expected = -0.5 * (x_0**2).sum(1) / path.prior_std**2 - 2 * (math.log(path.prior_std) + 0.5 * LOG_2PI)
    expected = expected + 2 * torch.log(s0 / s1).squeeze()
    torch.testing.assert_close(res.x_0, x_0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res.logp, expected, rtol=1e-5, atol=1e-5)
    if path_name == "ot":  # p_0 = N(0, I) exactly, so the CNF's density is the data's N(m, s^2 + sigma_min^2)
        direct = -0.5 * ((x_1 - m1) ** 2).sum(1) / s1.squeeze() ** 2 - 2 * torch.log(s1.squeeze()) - LOG_2PI
        torch.testing.assert_close(res.logp, direct, rtol=1e-5, atol=1e-5)


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    x = torch.randn(7, 3, 2)
    ref = torch.distributions.Normal(0.0, 2.5).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_prob(x, 2.5), ref)


def test_errors() -> None:
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"unknown divergence 'hutch'.*exact"):
        log_likelihood(linear, x, divergence="hutch")
    with pytest.raises(ValueError, match=r"unknown probe"):
        log_likelihood(linear, x, divergence="hutchinson", probe="sphere")


def test_dequantization_draws_share_probes_so_the_log_mean_exp_is_unbiased() -> None:
    """K = 2 draws of the same points under the linear field, one Rademacher probe each. Every draw's
    error is +-c (c = A_12 + A_21 = 0.6). Shared probes give each point l + e with one e = +-c, so
    the mean error over points is 0 up to c / sqrt(n); independent probes would give
    log((e^e1 + e^e2) / 2), whose mean is log(cosh c) / 2 = 0.0856 (the bias the shared probes remove)."""
    n = 4000
    x_1 = torch.randn(n, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    res = log_mean_likelihood(linear, [x_1, x_1], probe_seed=3, divergence="hutchinson", rtol=1e-7, atol=1e-7)
    error = res.logp - linear_logp(x_1)
    c = float(A[0, 1] + A[1, 0])
    torch.testing.assert_close(error.abs(), torch.full_like(error, abs(c)), rtol=0, atol=1e-5)  # one common e per point
    assert abs(float(error.mean())) < 4 * abs(c) / math.sqrt(n)
    independent_bias = 0.5 * math.log(math.cosh(c))
    assert independent_bias > 8 * abs(c) / math.sqrt(n)  # so the check above would catch independent probes
    exact = log_mean_likelihood(
        linear, [x_1, x_1], rtol=1e-7, atol=1e-7
    )  # exact divergence: the K-draw mean of equal terms
    torch.testing.assert_close(exact.logp, linear_logp(x_1), rtol=1e-5, atol=1e-5)
