"""Data-to-data flows (Tong et al. 2023): the bridges' targets against torchcfm's and their own time
derivative, the Schrodinger-bridge coupling's limits, the path energy's closed forms, and a method
that starts from a data source."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmexp.errors import ConfigError
from fmexp.flow.bridges import Bridge, BrownianBridge, ConstantBridge
from fmexp.flow.couplings import schrodinger_bridge, takes_generator
from fmexp.flow.methods import EmpiricalSource, Method, make_method, source_error
from fmexp.flow.metrics import normalized_path_energy, path_energy
from fmexp.registry import build

BRIDGES = [ConstantBridge(0.3), BrownianBridge(0.7)]


def _draws(n: int = 64, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x_0, x_1, eps = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.rand(n, generator=g, dtype=torch.float64).clamp(0.01, 0.99)
    return x_0, x_1, t, eps


@pytest.mark.parametrize(
    ("bridge", "matcher"),
    [
        (ConstantBridge(0.3), "ConditionalFlowMatcher"),
        (ConstantBridge(0.3), "ExactOptimalTransportConditionalFlowMatcher"),
        (BrownianBridge(0.7), "SchrodingerBridgeConditionalFlowMatcher"),
    ],
)
def test_targets_match_torchcfm(bridge: Bridge, matcher: str) -> None:
    """x_t and u_t given (x_0, x_1, t, eps), against torchcfm 1.0.7's, which `make install` puts in the
    venv (the test extra; its matchers need only torch, numpy and POT)."""
    torchcfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    cfm = getattr(torchcfm, matcher)(sigma=bridge.sigma)
    x_0, x_1, t, eps = _draws()
    t = t.clamp(0.1, 0.9)
    ours = bridge.sample(x_0, x_1, t, eps)
    x_t = cfm.sample_xt(x_0, x_1, t, eps)
    torch.testing.assert_close(ours.x_t, x_t)
    # torchcfm's SB divides by 2t(1 - t) + 1e-8: off by at most 1e-8 |s_t eps| |1 - 2t| / (2t(1 - t))^2, under
    # 1e-8 * 0.7 * 5 / 0.18^2 ~ 1.1e-6 for t in [0.1, 0.9] and |eps| < 5
    torch.testing.assert_close(ours.u_t, cfm.compute_conditional_flow(x_0, x_1, t, x_t), atol=1.1e-6, rtol=1e-7)


@pytest.mark.parametrize("bridge", BRIDGES, ids=repr)
def test_target_is_the_time_derivative_of_the_bridge(bridge: Bridge) -> None:
    """u_t = d/dt x_t at fixed (x_0, x_1, eps), by autograd: the regression target is the conditional flow's
    velocity (Tong et al., eq. 15; for the Brownian bridge, (1 - 2t) / (2t(1 - t)) (x_t - mu_t) + x_1 - x_0)."""
    x_0, x_1, t, eps = _draws(n=16)
    t = t.clone().requires_grad_(True)
    x_t = bridge.sample(x_0, x_1, t, eps).x_t
    derivative = torch.stack(
        [torch.autograd.grad(x_t[:, k].sum(), t, retain_graph=True)[0] for k in range(x_t.shape[1])], 1
    )
    torch.testing.assert_close(bridge.sample(x_0, x_1, t.detach(), eps).u_t, derivative)
    if isinstance(bridge, BrownianBridge):
        tt, mu = t.detach()[:, None], t.detach()[:, None] * x_1 + (1 - t.detach()[:, None]) * x_0
        issue = (1 - 2 * tt) / (2 * tt * (1 - tt)) * (x_t.detach() - mu) + (x_1 - x_0)
        torch.testing.assert_close(bridge.sample(x_0, x_1, t.detach(), eps).u_t, issue)


def test_brownian_bridge_pins_both_ends_and_the_constant_one_does_not() -> None:
    x_0, x_1, _, eps = _draws(n=8)
    for t, end in ((1e-12, x_0), (1 - 1e-12, x_1)):
        s = BrownianBridge(2.0).sample(x_0, x_1, torch.full((8,), t, dtype=torch.float64), eps)
        torch.testing.assert_close(s.x_t, end, atol=1e-5, rtol=0)
        c = ConstantBridge(0.5).sample(x_0, x_1, torch.full((8,), t, dtype=torch.float64), eps)
        torch.testing.assert_close(c.x_t - end, 0.5 * eps, atol=1e-5, rtol=0)


def test_brownian_target_is_finite_at_a_float_draw_of_either_end() -> None:
    """torch.rand draws exactly 0 with probability 2^-24 a draw (once in 65 000 batches of 256): the target
    there is x_1 - x_0 (x_t = mu_t), as torchcfm's, never inf (a loss of inf stopped a training run)."""
    x_0, x_1, _, eps = (v.float() for v in _draws(n=4))
    for end in (0.0, 1.0):
        s = BrownianBridge(1.0).sample(x_0, x_1, torch.full((4,), end), eps)
        torch.testing.assert_close(s.u_t, x_1 - x_0)
        torch.testing.assert_close(s.x_t, x_1 if end else x_0)


def test_bridges_are_registered_paths_and_refuse_a_negative_sigma() -> None:
    assert isinstance(build("path", {"_target_": "bridge", "sigma": 0.2}, "p"), ConstantBridge)
    assert build("path", {"_target_": "brownian_bridge"}, "p").sigma == 1.0
    with pytest.raises(ConfigError, match=r"p: fmexp.flow.bridges.ConstantBridge\(sigma=-1\) failed"):
        build("path", {"_target_": "bridge", "sigma": -1}, "p")


def test_schrodinger_bridge_tends_to_exact_ot_as_sigma_falls() -> None:
    """With regularization 2 sigma^2 small against the gap between the best and the second-best matching,
    the entropic plan is the OT permutation, so every drawn pair is one of its pairs. Here each x_1 lies
    within 0.1 of its own x_0 on a grid of spacing 1: any other matching costs at least about 1 more,
    whose weight is exp(-1 / 0.02) ~ 2e-22 against the permutation's. The reference permutation is
    scipy's Hungarian algorithm, not POT's."""
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(1)
    grid = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    x_0 = grid[torch.randperm(25, generator=g)]
    x_1 = grid + 0.05 * torch.randn(25, 2, generator=g)
    rows, cols = linear_sum_assignment(torch.cdist(x_0.double(), x_1.double()).pow(2).numpy())
    partner = {tuple(x_1[j].tolist()): tuple(x_0[i].tolist()) for i, j in zip(rows, cols, strict=True)}
    a, b = schrodinger_bridge(x_0, x_1, sigma=0.1, generator=torch.Generator().manual_seed(0))
    assert all(partner[tuple(y.tolist())] == tuple(x.tolist()) for x, y in zip(a, b, strict=True))


def test_schrodinger_bridge_tends_to_independence_as_sigma_grows() -> None:
    """With regularization far above the costs the plan is uniform, 1/n^2 per pair: over many draws the
    pairs' index frequencies match the product of uniform marginals (chi-square test at 1e-3)."""
    from scipy.stats import chisquare

    x_0, x_1 = torch.arange(4.0)[:, None], 10 + torch.arange(4.0)[:, None]
    g, counts = torch.Generator().manual_seed(0), np.zeros((4, 4))
    for _ in range(500):
        a, b = schrodinger_bridge(x_0, x_1, sigma=100.0, generator=g)
        np.add.at(counts, (a[:, 0].long().numpy(), (b[:, 0] - 10).long().numpy()), 1)
    assert chisquare(counts.ravel()).pvalue > 1e-3


def test_schrodinger_bridge_draws_from_the_generator() -> None:
    x_0, x_1 = torch.randn(32, 2), torch.randn(32, 2)
    one, two = (schrodinger_bridge(x_0, x_1, sigma=1.0, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(one, two, strict=True))
    coupling = build("coupling", "schrodinger_bridge", "c", sigma=0.5)
    assert takes_generator(coupling) and coupling.keywords == {"sigma": 0.5}


def test_path_energy_of_closed_form_fields() -> None:
    """A constant field c: PE = |c|^2. The field v = x: x_t = x_0 e^t, so PE = E|x_0|^2 (e^2 - 1) / 2; the
    trapezoid rule over 64 times is within 1e-3 relative of it (its error: (1/63)^2 / 12 times the
    second derivative, about 4e-4 here)."""
    x_0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = torch.tensor([3.0, -4.0], dtype=torch.float64)
    assert path_energy(lambda x, t: c.expand_as(x), x_0) == pytest.approx(25.0, rel=1e-9)
    exact = float(x_0.pow(2).sum(1).mean()) * (math.e**2 - 1) / 2
    assert path_energy(lambda x, t: x, x_0, rtol=1e-8, atol=1e-8) == pytest.approx(exact, rel=1e-3)
    assert normalized_path_energy(27.5, 25.0) == pytest.approx(0.1)
    assert normalized_path_energy(22.5, 25.0) == pytest.approx(0.1)


def test_a_method_on_a_data_source_draws_x0_from_it() -> None:
    """The loss sees x_0 from the source's points; sampling starts there (without replacement on the
    held-out split); on a bridge with sigma = 0 and the independent coupling the target is x_1 - x_0."""
    points = torch.arange(40.0).reshape(20, 2)
    method = Method(objective="fm", path=ConstantBridge(0.0), source=EmpiricalSource(points))
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return torch.zeros_like(x)

    x_1 = torch.randn(8, 2)
    loss = method.loss(model, x_1, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    x_t = seen[0]
    t = (x_t - x_0_of(x_t, x_1, points)).norm(dim=1) / (x_1 - x_0_of(x_t, x_1, points)).norm(dim=1)
    assert torch.all((t >= 0) & (t <= 1))
    torch.testing.assert_close(loss, (x_1 - x_0_of(x_t, x_1, points)).pow(2).mean(1))
    held = Method(objective="fm", path=ConstantBridge(0.0), source=EmpiricalSource(points, replace=False))
    starts = held.sample_source((20, 2), torch.Generator().manual_seed(0))
    assert sorted(map(tuple, starts.tolist())) == sorted(map(tuple, points.tolist()))


def x_0_of(x_t: torch.Tensor, x_1: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The source point on each straight segment from it to x_1 through x_t (sigma = 0)."""
    best = []
    for xt, x1 in zip(x_t, x_1, strict=True):
        d = x1 - points  # each candidate's segment; x_t on it iff (x_t - p) is parallel to d
        cross = (xt - points)[:, 0] * d[:, 1] - (xt - points)[:, 1] * d[:, 0]
        best.append(points[cross.abs().argmin()])
    return torch.stack(best)


@pytest.mark.parametrize(
    ("objective", "path", "reason"),
    [
        ("sm", "vp", r"objective 'sm' needs the Gaussian source N\(0, I\); a data source needs objective fm"),
        ("fm", "vp", r"VPPath.* does not start at the source \(a_0 = 0.00657\d*, sigma_0 = 0.99997\d*"),
        ("fm", "ve", r"VEPath.* does not start at the source \(a_0 = 1, sigma_0 = 10"),
    ],
)
def test_a_data_source_refuses_paths_that_assume_a_gaussian_source(objective: str, path: str, reason: str) -> None:
    built = build("path", path, "p", sigma_min=1e-2)
    error = source_error(objective, built)
    assert error is not None and __import__("re").search(reason, error), error
    assert source_error("fm", build("path", "ot", "p")) is None
    assert source_error("fm", ConstantBridge(0.1)) is None
    with pytest.raises(ConfigError, match="a data source needs|does not start at the source"):
        Method(objective=objective, path=built, source=EmpiricalSource(torch.zeros(4, 2)))


def test_score_matching_is_refused_on_a_bridge() -> None:
    with pytest.raises(ConfigError, match=r"objective 'sm' needs a Gaussian path .* is a bridge"):
        make_method("sm", {"_target_": "brownian_bridge"})
