"""A study's search space: Hydra's sweep grammar (``choice``, ``interval``, ``range``, ``tag(log, ...)``)
as Optuna distributions, the values each holds, and the points of a grid."""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import numpy as np
import optuna

from fmexp.config.overrides import parse_overrides
from fmexp.errors import ConfigError

__all__ = ["to_distribution", "probe_values", "points", "grid_points", "override"]


def to_distribution(key: str, expr: str, source: str) -> optuna.distributions.BaseDistribution:
    """A Hydra sweep expression as an Optuna distribution (as the Hydra Optuna sweeper maps them)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    (ov,) = parse_overrides([f"{key}={expr}"], f"{source}: search_space.{key}")
    value = ov.value()
    log = "log" in getattr(value, "tags", set())
    where = f"{source}: search_space.{key}"
    if isinstance(value, ChoiceSweep):
        if log:
            raise ConfigError(f"{where}: tag(log, ...) applies to interval or range, not choice")
        if not value.list:
            raise ConfigError(f"{where}: choice() needs at least one value")
        return optuna.distributions.CategoricalDistribution(cast(list[Any], value.list))
    if isinstance(value, IntervalSweep):
        low, high = float(cast(float, value.start)), float(cast(float, value.end))
        _check_bounds(where, low, high, log)
        return optuna.distributions.FloatDistribution(low, high, log=log)
    if isinstance(value, RangeSweep):
        start, stop, step = cast(float, value.start), cast(float, value.stop), value.step
        if step is None or step <= 0:
            raise ConfigError(f"{where}: range() needs a positive step, got {step}")
        n = math.ceil((stop - start) / step)
        if n < 1:
            raise ConfigError(f"{where}: range({start}, {stop}) is empty: the bounds are reversed")
        last = start + (n - 1) * step
        _check_bounds(where, start, last, log, allow_equal=True)
        if all(isinstance(v, int) for v in (start, stop, step)):
            return optuna.distributions.IntDistribution(int(start), int(last), log=log, step=1 if log else int(step))
        if log:
            raise ConfigError(f"{where}: tag(log, range(...)) needs integer bounds")
        return optuna.distributions.FloatDistribution(float(start), float(last), step=float(step))
    raise ConfigError(
        f"{where}: {expr!r} is not a sweep; use choice(...), interval(a, b), range(a, b) or tag(log, ...)"
        " (fixed values belong in overrides)"
    )


def _check_bounds(where: str, low: float, high: float, log: bool, allow_equal: bool = False) -> None:
    if high < low or (high == low and not allow_equal):
        raise ConfigError(f"{where}: the bounds are reversed or empty: low={low}, high={high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range must stay above 0, got low={low}")


def probe_values(dist: optuna.distributions.BaseDistribution) -> list[Any]:
    """The values ``load_study`` tries a run with: a choice's values; a range's or an interval's bounds."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution)
    return [dist.low, dist.high]


def override(key: str, value: Any) -> str:
    """A ``key=value`` override for a sampled value (strings quoted for the Hydra grammar)."""
    return f"{key}={value}" if not isinstance(value, str) else f"{key}='{value}'"


def points(dist: optuna.distributions.BaseDistribution) -> list[Any]:
    """Every value ``dist`` holds: a choice's, or a range's from ``low`` to ``high`` by ``step`` (an interval
    without a step holds no list of values: an error)."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution)
    if dist.step is None:
        raise ValueError(f"{dist} is an interval: it has no list of values")
    n = int(round((dist.high - dist.low) / dist.step)) + 1
    return [dist.low + i * dist.step for i in range(n)]


def grid_points(space: dict[str, optuna.distributions.BaseDistribution], seed: int) -> list[dict[str, Any]]:
    """Every point of a grid study, in an order shuffled by ``seed`` (a partial grid is a random subset)."""
    axes = {key: points(d) for key, d in space.items()}  # load_study refuses a grid over an interval
    grid = [dict(zip(axes, values, strict=False)) for values in itertools.product(*axes.values())]
    order = np.random.default_rng(seed).permutation(len(grid))
    return [grid[i] for i in order]
