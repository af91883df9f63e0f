"""A method: a training objective on a probability path, with a coupling (the rows of Table 1).

``fm`` regresses the path's conditional field (CFM, eq. 14); ``sm`` is the paper's score-matching
baseline, whose network predicts the noise and is sampled through the probability-flow ODE. Either
way ``velocity(model)`` is the field that ``ode.integrate`` and ``likelihood.log_likelihood`` take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property

import torch
from torch import Tensor, nn

from fmexp.errors import ConfigError
from fmexp.flow.couplings import Coupling, independent
from fmexp.flow.losses import Field, Objective
from fmexp.flow.paths import PathSample, ProbabilityPath, _expand
from fmexp.registry import Spec, build, resolve

TimeSampler = Callable[[int, torch.Generator | None, torch.device, torch.dtype], Tensor]
"""``(n, generator, device, dtype) -> t`` of shape ``(n,)`` in [0, 1]: the distribution of t in eq. 14."""

__all__ = ["TimeSampler", "uniform_time", "logit_normal_time", "objective_error", "Method", "make_method"]


def uniform_time(n: int, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``t ~ U[0, 1]``, the paper's choice (eq. 14)."""
    return torch.rand(n, generator=generator, device=device, dtype=dtype)


def logit_normal_time(n: int, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``t = sigmoid(z)``, ``z ~ N(0, 1)`` (Esser et al. 2024): more weight on mid-path times. It reweights
    the loss over t and leaves its minimizer, the marginal field, unchanged."""
    return torch.sigmoid(torch.randn(n, generator=generator, device=device, dtype=dtype))


def objective_error(objective: str, path: ProbabilityPath) -> str | None:
    """Why ``objective`` is not defined on ``path``, or None: score matching's network predicts the noise of
    ``x_t = a_t x_1 + sigma_t x_0``, whose probability-flow ODE needs ``mu_0 = a_0 x_1`` with ``a_0 > 0``."""
    a_0 = float(path.schedule(torch.zeros(1))[0][0])
    if resolve("objective", objective)().needs_source_mean and a_0 <= 0.0:
        return (
            f"objective {objective!r} needs a path with mu_0 = a_0 x_1, a_0 > 0 (vp, ve);"
            f" {type(path).__name__} has a_0 = {a_0:g}"
        )
    return None


@dataclass(frozen=True)
class Method:
    """An objective (``fm`` or ``sm``), a path, a coupling and a distribution of t. With ``data_std``, the
    network sees its input with the noise kept within the data's scale (``ProbabilityPath.input_scale``:
    VE's only); without, ``x_t``."""

    objective: str
    path: ProbabilityPath
    coupling: Coupling = field(default=independent)
    time_sampler: TimeSampler = field(default=uniform_time)
    data_std: float | None = None

    def __post_init__(self) -> None:
        error = objective_error(self.objective, self.path)
        if error is not None:
            raise ConfigError(error)

    @cached_property
    def _objective(self) -> Objective:
        objective: Objective = resolve("objective", self.objective)()
        return objective

    def sample_source(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None, device: str | torch.device = "cpu"
    ) -> Tensor:
        """Draw from the source ``N(0, prior_std^2 I)`` that sampling starts from at t=0."""
        return self.path.prior_std * torch.randn(shape, generator=generator, device=device)

    def loss(
        self, model: nn.Module, x_1: Tensor, generator: torch.Generator | None = None, rows: slice | None = None
    ) -> Tensor:
        """Per-sample loss ``(B,)`` at ``t`` from the time sampler, ``x_0 ~ N(0, I)`` coupled to the data batch ``x_1``.

        With ``rows``, the draws (and the coupling) are made for the whole batch and only those rows go
        through the model: a rank's share of a distributed batch (``fmexp.training.distributed``)."""
        x_0 = torch.randn(x_1.shape, generator=generator, device=x_1.device, dtype=x_1.dtype)
        t = self.time_sampler(x_1.shape[0], generator, x_1.device, x_1.dtype)
        x_0, x_1 = self.coupling(x_0, x_1)
        sample = self.path.sample(x_0, x_1, t)
        if rows is not None:
            sample = PathSample(*(getattr(sample, f.name)[rows] for f in fields(PathSample)))
        return self._objective.loss(self.network(model), sample)

    def network(self, model: nn.Module) -> Field:
        """The network as the objective sees it: ``model(c_t x, t)`` with ``data_std``, else ``model``."""
        if self.data_std is None:
            return model
        path, data_std = self.path, self.data_std

        def scaled(x: Tensor, t: Tensor) -> Tensor:
            return model(x * _expand(path.input_scale(t, data_std).to(x.dtype), x), t)

        return scaled

    def velocity(self, model: nn.Module) -> Field:
        """The field to integrate: the network itself for ``fm``, the probability-flow ODE of ``sm``."""
        return self._objective.velocity(self.network(model), self.path)


def make_method(
    objective: str,
    path: Spec,
    coupling: Spec = "independent",
    time_sampler: Spec = "uniform",
    data_std: float | None = None,
    **path_args: float,
) -> Method:
    """Build a method from names or ``_target_`` specs (``fmexp.registry``), e.g.
    ``make_method("fm", "ot", sigma_min=1e-4)``; ``path_args`` go to the path where it takes them."""
    return Method(
        objective=objective,
        path=build("path", path, "path", **path_args),
        coupling=build("coupling", coupling, "coupling"),
        time_sampler=build("time_sampler", time_sampler, "time_sampler"),
        data_std=data_std,
    )
