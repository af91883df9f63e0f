"""Classifier-free guidance on a closed form: a Gaussian class-conditional model whose conditional and
unconditional FM-OT fields are known, checked against the tilted density's score by autograd."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from fmexp.flow.guidance import Guided, class_accuracy, drop_labels, guidance_error, proportional_labels
from fmexp.flow.ode import integrate

MU = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], dtype=torch.float64)  # the classes' means
PI = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)  # their proportions
S = 0.3  # each class is N(mu_k, S^2 I)
NULL = 3


def variance(t: Tensor) -> Tensor:
    """``Var x_t = (1-t)^2 + t^2 S^2`` for ``x_t = t x_1 + (1 - t) x_0``, ``x_0 ~ N(0, I)``, ``x_1 ~ N(mu_k, S^2)``."""
    return (1 - t) ** 2 + t**2 * S**2


class GaussianClasses:
    """The exact FM-OT field (sigma_min = 0) of each class and of their mixture, as a network ``v(x, t, y)``.

    Class k: ``E[x_1 - x_0 | x_t = x] = mu_k + c_t (x - t mu_k)``, ``c_t = (t S^2 - (1 - t)) / Var x_t``.
    The null class (the mixture): those fields weighted by each class's posterior at ``(x, t)``.
    Counts its calls and the rows they carried.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0

    def __call__(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        self.rows += len(x)
        t_ = t[:, None]
        var = variance(t_)
        c = (t_ * S**2 - (1 - t_)) / var
        fields = torch.stack([MU[k] + c * (x - t_ * MU[k]) for k in range(3)], 1)  # (B, 3, 2)
        log_w = torch.log(PI) - ((x[:, None] - t_[:, None] * MU) ** 2).sum(-1) / (2 * var)
        posterior = torch.softmax(log_w, 1)
        mixture = (posterior[..., None] * fields).sum(1)
        own = fields[torch.arange(len(x)), y.clamp(max=2)]
        return torch.where((y == NULL)[:, None], mixture, own)


def log_density(x: Tensor, t: Tensor, y: int | None) -> Tensor:
    """``log p_t(x | y)``, or with ``y`` None the mixture's ``log p_t(x)``."""
    var = variance(t)[:, None]
    log_n = -((x[:, None] - t[:, None, None] * MU) ** 2).sum(-1) / (2 * var) - torch.log(2 * math.pi * var)
    return log_n[:, y] if y is not None else torch.logsumexp(torch.log(PI) + log_n, 1)


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("y", [0, 1, 2])
def test_the_guided_field_is_the_tilted_densitys_field(w: float, y: int) -> None:
    """FM-OT's field is ``(x + (1 - t) grad log p_t(x)) / t`` (Tweedie), so the guided field must be that of
    ``(1 + w) log p_t(x | y) - w log p_t(x)``, whose gradient autograd takes from the densities alone."""
    gen = torch.Generator().manual_seed(y)
    x = (3 * torch.randn(64, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    t = 0.05 + 0.9 * torch.rand(64, generator=gen, dtype=torch.float64)
    tilted = (1 + w) * log_density(x, t, y) - w * log_density(x, t, None)
    (score,) = torch.autograd.grad(tilted.sum(), x)
    expected = (x + (1 - t)[:, None] * score) / t[:, None]
    labels = torch.full((64,), y)
    for batched in (True, False):
        guided = Guided(GaussianClasses(), labels, NULL, w, batched)
        torch.testing.assert_close(guided(x.detach(), t), expected.detach(), rtol=1e-9, atol=1e-9)


def test_network_evaluations_per_nfe_are_counted() -> None:
    """NFE counts the ODE's field calls; the network is called once per NFE at w = 0 and batched, twice
    unbatched; batched at w != 0, each call carries both rows of each sample (8 samples: 16 rows): counted
    on the network itself over a 10-step Euler solve."""
    x_0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    for w, batched, per_nfe, rows in ((0.0, False, 1, 1), (0.0, True, 1, 1), (2.0, True, 1, 2), (2.0, False, 2, 1)):
        network = GaussianClasses()
        guided = Guided(network, y, NULL, w, batched)
        result = integrate(guided, x_0, method="euler", steps=10)
        assert (result.nfe, network.calls, guided.network_evaluations) == (10, 10 * per_nfe, per_nfe)
        assert (network.rows, guided.rows_per_call) == (10 * per_nfe * rows * 8, rows)


def test_the_closed_form_class_field_carries_the_source_to_its_class() -> None:
    """The model of the tests is right: at w = 0, solving its class-0 field from N(0, I) to t = 1 gives
    class 0's Gaussian N(mu_0, S^2 I) (within 4 standard errors: S / sqrt(n) for the mean, S / sqrt(2n)
    for the std)."""
    n = 4000
    x_0 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(n, dtype=torch.int64)
    x_1 = integrate(Guided(GaussianClasses(), y, NULL, 0.0), x_0, method="rk4", steps=100).x
    torch.testing.assert_close(x_1.mean(0), MU[0], atol=4 * S / math.sqrt(n), rtol=0)
    torch.testing.assert_close(
        x_1.std(0), torch.full((2,), S, dtype=torch.float64), atol=4 * S / math.sqrt(2 * n), rtol=0
    )


def test_label_dropout_replaces_a_fraction_p_by_the_null_label() -> None:
    y = torch.arange(10).repeat(2000)
    gen = torch.Generator().manual_seed(0)
    dropped = drop_labels(y, 0.1, null=10, generator=gen)
    fraction = float((dropped == 10).double().mean())
    assert abs(fraction - 0.1) < 3 * math.sqrt(0.1 * 0.9 / len(y))  # 3 binomial standard errors
    kept = dropped != 10
    assert torch.equal(dropped[kept], y[kept])
    assert drop_labels(y, 0.0, null=10) is y


def test_requested_labels_follow_the_class_proportions() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    assert torch.bincount(proportional_labels(labels, 100, 3)).tolist() == [50, 30, 20]
    counts = torch.bincount(proportional_labels(labels, 7, 3), minlength=3)
    assert counts.tolist() == [4, 2, 1]  # 3.5, 2.1, 1.4: floors 3, 2, 1 and the one left to the largest remainder
    assert torch.bincount(proportional_labels(labels, 359, 4), minlength=4)[3] == 0  # a class never seen
    prefix = proportional_labels(labels, 100, 3)[:10]  # interleaved: the first tenth holds a tenth of each
    assert torch.bincount(prefix, minlength=3).tolist() == [5, 3, 2]


def test_class_accuracy_overall_and_per_class() -> None:
    requested = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 0, 0])
    overall, per_class = class_accuracy(predicted, requested, 4)
    assert overall == pytest.approx(3 / 6)
    assert per_class[:3] == pytest.approx([1 / 2, 2 / 3, 0.0]) and math.isnan(per_class[3])


def test_guidance_without_label_dropout_is_an_error() -> None:
    assert guidance_error(0.0, 0.0) is None and guidance_error(2.0, 0.1) is None
    assert "train.label_dropout > 0" in str(guidance_error(1.0, 0.0))
    assert "[0, 1)" in str(guidance_error(0.0, 1.0)) and "[0, 1)" in str(guidance_error(0.0, -0.1))
