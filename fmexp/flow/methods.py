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
from torch import Tensor

from fmexp.errors import ConfigError
from fmexp.flow.bridges import Bridge
from fmexp.flow.couplings import Coupling, independent, takes_generator
from fmexp.flow.losses import Field, Objective
from fmexp.flow.paths import PathSample, ProbabilityPath, _expand
from fmexp.flow.reflow import PairedSource
from fmexp.registry import Spec, build, resolve

TimeSampler = Callable[[int, torch.Generator | None, torch.device, torch.dtype], Tensor]
"""``(n, generator, device, dtype) -> t`` of shape ``(n,)`` in [0, 1]: the distribution of t in eq. 14."""

__all__ = [
    "TimeSampler",
    "uniform_time",
    "logit_normal_time",
    "objective_error",
    "source_error",
    "EmpiricalSource",
    "Method",
    "make_method",
]


def uniform_time(n: int, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``t ~ U[0, 1]``, the paper's choice (eq. 14)."""
    return torch.rand(n, generator=generator, device=device, dtype=dtype)


def logit_normal_time(n: int, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``t = sigmoid(z)``, ``z ~ N(0, 1)`` (Esser et al. 2024): more weight on mid-path times. It reweights
    the loss over t and leaves its minimizer, the marginal field, unchanged."""
    return torch.sigmoid(torch.randn(n, generator=generator, device=device, dtype=dtype))


def objective_error(objective: str, path: ProbabilityPath | Bridge) -> str | None:
    """Why ``objective`` is not defined on ``path``, or None: score matching's network predicts the noise of
    ``x_t = a_t x_1 + sigma_t x_0``, whose probability-flow ODE needs ``mu_0 = a_0 x_1`` with ``a_0 > 0``
    (and a Gaussian source: no bridge)."""
    needs_mean = resolve("objective", objective)().needs_source_mean
    if isinstance(path, Bridge):
        return (
            f"objective {objective!r} needs a Gaussian path with mu_0 = a_0 x_1 (vp, ve); {path!r} is a bridge"
            " between a coupled pair, which only fm regresses"
            if needs_mean
            else None
        )
    a_0 = float(path.schedule(torch.zeros(1))[0][0])
    if needs_mean and a_0 <= 0.0:
        return (
            f"objective {objective!r} needs a path with mu_0 = a_0 x_1, a_0 > 0 (vp, ve);"
            f" {type(path).__name__} has a_0 = {a_0:g}"
        )
    return None


def source_error(objective: str, path: ProbabilityPath | Bridge) -> str | None:
    """Why the method cannot start from a data source (a pair's, ``pairs.<p>.source``), or None. A bridge
    starts at the source's points; a Gaussian path starts there only if ``x_t`` at t = 0 is ``x_0`` itself
    (``a_0 = 0``, ``sigma_0 = 1``: ot, cosine, polynomial). VP's ``a_0 > 0`` and VE's ``sigma_0 = sigma_max``
    assume ``x_0 ~ N(0, I)``, and score matching needs that source's score."""
    if resolve("objective", objective)().needs_source_mean:
        return f"objective {objective!r} needs the Gaussian source N(0, I); a data source needs objective fm"
    if isinstance(path, Bridge):
        return None
    a_0, sigma_0, _, _ = (float(v[0]) for v in path.schedule(torch.zeros(1)))
    if a_0 != 0.0 or sigma_0 != 1.0:
        return (
            f"{path!r} does not start at the source (a_0 = {a_0:g}, sigma_0 = {sigma_0:g}; a data source needs"
            " a_0 = 0, sigma_0 = 1): use a bridge (bridge, brownian_bridge) or ot"
        )
    return None


@dataclass(frozen=True)
class EmpiricalSource:
    """A data source given by its points: draws ``n`` rows, with replacement (training batches) or, with
    ``replace=False``, a random subset without (the held-out starts of the sample stage)."""

    points: Tensor
    replace: bool = True

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> Tensor:
        if self.replace:
            index = torch.randint(len(self.points), (n,), generator=generator, device=device)
        elif n <= len(self.points):
            index = torch.randperm(len(self.points), generator=generator, device=device)[:n]
        else:
            raise ValueError(f"{n} draws without replacement from a source of {len(self.points)} points")
        return self.points.to(device)[index]


@dataclass(frozen=True)
class Method:
    """An objective (``fm`` or ``sm``), a path, a coupling and a distribution of t. With ``data_std``, the
    network sees its input with the noise kept within the data's scale (``ProbabilityPath.input_scale``:
    VE's only); without, ``x_t``. ``source``: the points ``x_0`` is drawn from (a data-to-data flow);
    None: the Gaussian ``N(0, I)`` of the paper."""

    objective: str
    path: ProbabilityPath | Bridge
    coupling: Coupling = field(default=independent)
    time_sampler: TimeSampler = field(default=uniform_time)
    data_std: float | None = None
    source: EmpiricalSource | None = None
    couples: PairedSource | None = None  # reflow: training draws stored (x_0, x_1) couples, not x_0 alone

    def __post_init__(self) -> None:
        error = objective_error(self.objective, self.path)
        if error is None and self.source is not None:
            error = source_error(self.objective, self.path)
        if error is None and isinstance(self.path, Bridge) and self.data_std is not None:
            error = "a bridge scales no input: data_std must be None"
        if error is not None:
            raise ConfigError(error)

    @cached_property
    def _objective(self) -> Objective:
        objective: Objective = resolve("objective", self.objective)()
        return objective

    def sample_source(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None, device: str | torch.device = "cpu"
    ) -> Tensor:
        """Draw the starts of sampling at t=0: from ``source``, else from ``N(0, prior_std^2 I)``."""
        if self.source is not None:
            return self.source.sample(shape[0], generator, device)
        return self.prior_std * torch.randn(shape, generator=generator, device=device)

    @property
    def prior_std(self) -> float:
        """The std of the Gaussian source (a bridge's: 1)."""
        return 1.0 if isinstance(self.path, Bridge) else self.path.prior_std

    def loss(
        self, model: Field, x_1: Tensor, generator: torch.Generator | None = None, rows: slice | None = None
    ) -> Tensor:
        """Per-sample loss ``(B,)`` at ``t`` from the time sampler, ``x_0`` (``N(0, I)``, or the source's)
        coupled to the data batch ``x_1`` (with ``couples``: a batch of stored couples in their place); on a
        bridge, with its noise drawn last.

        With ``rows``, the draws (and the coupling) are made for the whole batch and only those rows go
        through the model: a rank's share of a distributed batch (``fmexp.training.distributed``)."""
        if self.couples is not None:  # the batch's size only: its rows are the couples' x_1
            x_0, x_1 = (x.to(x_1.dtype) for x in self.couples.sample_pairs(x_1.shape[0], generator, x_1.device))
        elif self.source is None:
            x_0 = torch.randn(x_1.shape, generator=generator, device=x_1.device, dtype=x_1.dtype)
        else:
            x_0 = self.source.sample(x_1.shape[0], generator, x_1.device).to(x_1.dtype)
        t = self.time_sampler(x_1.shape[0], generator, x_1.device, x_1.dtype)
        x_0, x_1 = self.coupling(x_0, x_1, **({"generator": generator} if self._coupling_draws else {}))
        if isinstance(self.path, Bridge):
            eps = torch.randn(x_1.shape, generator=generator, device=x_1.device, dtype=x_1.dtype)
            sample = self.path.sample(x_0, x_1, t, eps)
        else:
            sample = self.path.sample(x_0, x_1, t)
        if rows is not None:
            sample = PathSample(*(getattr(sample, f.name)[rows] for f in fields(PathSample)))
        return self._objective.loss(self.network(model), sample)

    @cached_property
    def _coupling_draws(self) -> bool:
        return takes_generator(self.coupling)

    def network(self, model: Field) -> Field:
        """The network as the objective sees it: ``model(c_t x, t)`` with ``data_std``, else ``model``."""
        if self.data_std is None:
            return model
        path, data_std = self.path, self.data_std
        assert isinstance(path, ProbabilityPath)  # __post_init__: a bridge has no data_std

        def scaled(x: Tensor, t: Tensor) -> Tensor:
            return model(x * _expand(path.input_scale(t, data_std).to(x.dtype), x), t)

        return scaled

    def velocity(self, model: Field) -> Field:
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
