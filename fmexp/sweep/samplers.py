"""A study's sampler and pruner: Optuna's classes by name, with the study file's options passed through
to their constructors and checked before any trial runs.

``sampler: {name: tpe, seed: 0, options: {n_startup_trials: 4}}`` builds
``TPESampler(multivariate=True, constant_liar=True, n_startup_trials=4, seed=...)``: fmexp's defaults
(``DEFAULTS``), then the file's options. The seed is the study's, drawn afresh per trial
(``trial_queue.TrialSeededSampler``), so it is no option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optuna

from fmexp.errors import ConfigError
from fmexp.registry import constructor_args, did_you_mean

__all__ = ["SAMPLERS", "PRUNERS", "make_sampler", "make_pruner", "check_arguments", "check_options", "startup_trials"]

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.RandomSampler,  # the grid's points are enqueued as fixed params: no draw asks it
    "nsga2": optuna.samplers.NSGAIISampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "tpe": {"multivariate": True, "constant_liar": True},  # constant_liar: parallel workers spread out
    "median": {"n_startup_trials": 2, "n_warmup_steps": 0},
    "hyperband": {"min_resource": 1},  # max_resource: the trial's training steps (make_pruner)
}
STARTUP = {"tpe": "n_startup_trials", "cmaes": "n_startup_trials", "nsga2": "population_size"}
"""The option that counts a sampler's first trials, which it draws at random (NSGA-II: its first generation)."""


def _options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS.get(name, {}), **options}


def make_sampler(name: str, options: Mapping[str, Any]) -> Callable[[int], optuna.samplers.BaseSampler]:
    """``seed -> sampler``: the named sampler with fmexp's defaults and ``options``."""
    cls: Any = SAMPLERS[name]  # each takes seed=; BaseSampler does not say so
    kwargs = _options(name, options)
    return lambda seed: cls(**kwargs, seed=seed)


def make_pruner(name: str, options: Mapping[str, Any], steps: int) -> optuna.pruners.BasePruner:
    """The named pruner with fmexp's defaults and ``options``; Hyperband's largest budget is ``steps``."""
    kwargs = _options(name, options)
    if name == "hyperband":
        kwargs.setdefault("max_resource", steps)
    return PRUNERS[name](**kwargs)


def check_arguments(where: str, cls: Callable[..., Any], given: Iterable[str], exclude: Iterable[str] = ()) -> None:
    """``ConfigError`` for the first of ``given`` that ``cls``'s constructor does not take (``exclude``:
    those fmexp sets itself), naming ``where.<key>`` and the arguments it does take."""
    allowed = sorted(set(constructor_args(cls)) - set(exclude))
    for key in given:
        if key not in allowed:
            raise ConfigError(
                f"{where}.{key}: not an argument of {getattr(cls, '__name__', cls)}; choose from {allowed}"
                f"{did_you_mean(key, allowed)}"
            )


def check_options(field: str, name: str, options: Mapping[str, Any], source: str) -> None:
    """``ConfigError`` naming ``source`` and ``<field>.options.<key>`` for an option the class does not
    take (with the ones it does), or for values its constructor refuses: it is built once, here."""
    cls = (SAMPLERS if field == "sampler" else PRUNERS)[name]
    # the seed is the study's; a grid's points are enqueued, so its sampler takes nothing
    check_arguments(f"{source}: {field}.options", cls, options, constructor_args(cls) if name == "grid" else ["seed"])
    try:
        make_sampler(name, options)(0) if field == "sampler" else make_pruner(name, options, 1)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {field}.options: {cls.__name__} refuses {dict(options)}: {e}") from None


def startup_trials(name: str, options: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(option, value)``: how many first trials the sampler draws at random; None for one that always does
    (random, grid)."""
    if name not in STARTUP:
        return None
    option = STARTUP[name]
    value = _options(name, options).get(option)
    if value is None:
        value = inspect.signature(SAMPLERS[name]).parameters[option].default
    return option, int(value)
