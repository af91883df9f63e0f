"""Per-sample training losses on a Gaussian path, the score-to-velocity conversion, and the objectives
that pair a loss with the field a trained network defines (``fm`` and ``sm`` in ``fmexp.registry``).

Both losses return shape ``(B,)``: the squared error averaged over the non-batch dimensions
(``||.||^2 / d``), so that a learning rate transfers between data of different dimension.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from torch import Tensor

from fmexp.flow.bridges import Bridge
from fmexp.flow.paths import PathSample, ProbabilityPath, _expand

Field = Callable[[Tensor, Tensor], Tensor]
"""A time-dependent field ``f(x, t)`` with ``x`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)``."""


def _per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).pow(2).flatten(1).mean(dim=1)


def cfm_loss(v: Field, sample: PathSample) -> Tensor:
    """Conditional flow matching, ``||v_t(psi_t(x_0)) - (sigma_t' x_0 + mu_t')||^2`` (eq. 14)."""
    return _per_sample_mse(v(sample.x_t, sample.t), sample.u_t)


def dsm_loss(epsilon: Field, sample: PathSample) -> Tensor:
    """Denoising score matching with ``lambda(t) = sigma_t^2`` (Song et al. 2021; the paper's baseline).

    With the score parameterized as ``s(x, t) = -epsilon(x, t) / sigma_t``,
    ``sigma_t^2 ||s(x_t, t) - grad log p_t(x_t | x_1)||^2 = ||epsilon(x_t, t) - x_0||^2``,
    because ``grad log p_t(x_t | x_1) = -(x_t - mu_t) / sigma_t^2 = -x_0 / sigma_t``.
    """
    return _per_sample_mse(epsilon(sample.x_t, sample.t), sample.x_0)


def epsilon_to_velocity(epsilon: Field, path: ProbabilityPath) -> Field:
    """The probability-flow field of a noise-prediction model on an affine path.

    For ``x_t = a_t x_1 + sigma_t x_0`` the marginal field is ``u_t(x) = sigma_t' E[x_0|x] + a_t' E[x_1|x]``
    with ``E[x_0|x] = epsilon(x, t) = -sigma_t grad log p_t(x)`` and ``E[x_1|x] = (x - sigma_t E[x_0|x]) / a_t``:

        u_t(x) = (a_t'/a_t) x + (sigma_t' - a_t' sigma_t / a_t) epsilon(x, t).

    It needs ``a_t > 0`` on the whole interval, which holds for the VP and VE paths, not for OT at t=0.
    """

    def v(x: Tensor, t: Tensor) -> Tensor:
        a, sigma, da, dsigma = (_expand(s, x) for s in path.schedule(t))
        return da / a * x + (dsigma - da * sigma / a) * epsilon(x, t)

    return v


def score_to_velocity(score: Field, path: ProbabilityPath) -> Field:
    """The probability-flow field of a score model, ``epsilon = -sigma_t * score``; see ``epsilon_to_velocity``."""

    def epsilon(x: Tensor, t: Tensor) -> Tensor:
        _, sigma, _, _ = path.schedule(t)
        return -_expand(sigma, x) * score(x, t)

    return epsilon_to_velocity(epsilon, path)


class Objective(ABC):
    """A training objective on a Gaussian path: the per-sample loss of a network on a path sample, and
    the velocity field that the trained network defines (what ``ode.integrate`` takes)."""

    needs_source_mean: bool = False
    """True if the objective needs ``a_0 > 0`` (``mu_0 = a_0 x_1``): a diffusion path, not OT."""

    @abstractmethod
    def loss(self, model: Field, sample: PathSample) -> Tensor:
        """Per-sample loss, shape ``(B,)``."""

    @abstractmethod
    def velocity(self, model: Field, path: ProbabilityPath | Bridge) -> Field:
        """The field to integrate for a network trained with this objective on ``path``."""


class FlowMatching(Objective):
    """``fm``: regress the path's conditional field (CFM, eq. 14); the network is the velocity."""

    def loss(self, model: Field, sample: PathSample) -> Tensor:
        return cfm_loss(model, sample)

    def velocity(self, model: Field, path: ProbabilityPath | Bridge) -> Field:
        return model


class ScoreMatching(Objective):
    """``sm``: the paper's score-matching baseline; the network predicts the noise and is sampled
    through the probability-flow ODE (``epsilon_to_velocity``)."""

    needs_source_mean = True

    def loss(self, model: Field, sample: PathSample) -> Tensor:
        return dsm_loss(model, sample)

    def velocity(self, model: Field, path: ProbabilityPath | Bridge) -> Field:
        assert isinstance(path, ProbabilityPath)  # objective_error: score matching is refused on a bridge
        return epsilon_to_velocity(model, path)
