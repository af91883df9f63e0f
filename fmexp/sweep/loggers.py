"""Logging a study's trials to experiment trackers, through optuna-integration's callbacks.

``loggers: {mlflow: {tracking_uri: sqlite:///mlflow.db}, wandb: {wandb_kwargs: {project: fmexp}}}`` in
a study file: each key names a tracker, its mapping the callback's constructor arguments (checked
before any trial runs). fmexp's worker does not go through ``study.optimize``, so it calls them
itself after each trial that counts (``trial_queue.run_worker``). A tracker that fails warns and
the study goes on: the storage, not the tracker, is the study's record.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from fmexp.errors import ConfigError
from fmexp.registry import did_you_mean
from fmexp.sweep.samplers import check_arguments

__all__ = ["LOGGERS", "Callback", "check_loggers", "make_loggers"]

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]

LOGGERS = {
    "mlflow": ("optuna_integration.mlflow", "MLflowCallback", "mlflow"),
    "wandb": ("optuna_integration.wandb", "WeightsAndBiasesCallback", "wandb"),
}
"""Tracker name -> (module, callback class, the extra that installs it)."""


def _callback_class(name: str, source: str) -> type:
    module, cls, extra = LOGGERS[name]
    try:
        with warnings.catch_warnings():  # optuna-integration 5 marks MLflowCallback deprecated, to go in 6
            warnings.simplefilter("ignore", FutureWarning)
            found: type = getattr(importlib.import_module(module), cls)
            return found
    except ImportError as e:
        raise ConfigError(
            f"{source}: loggers.{name}: {e.name or module} is not installed; pip install -e '.[{extra}]'"
        ) from None


def check_loggers(loggers: Mapping[str, Mapping[str, Any]], source: str) -> None:
    """``ConfigError`` naming ``source`` and the key for an unknown tracker, an uninstalled one, or an
    argument its callback does not take (``metric_name`` is fmexp's: the study's objectives)."""
    for name, kwargs in loggers.items():
        if name not in LOGGERS:
            raise ConfigError(
                f"{source}: loggers.{name}: not a tracker fmexp logs to; choose from {list(LOGGERS)}"
                f"{did_you_mean(name, LOGGERS)}"
            )
        check_arguments(f"{source}: loggers.{name}", _callback_class(name, source), kwargs, ["metric_name"])


def make_loggers(loggers: Mapping[str, Mapping[str, Any]], metrics: list[str], source: str) -> list[Callback]:
    """The trackers' callbacks, each wrapped so that its failure warns on stderr and is otherwise ignored."""
    out = []
    for name, kwargs in loggers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            callback = _callback_class(name, source)(metric_name=metrics, **dict(kwargs))
        out.append(_warn_on_failure(name, callback))
    return out


def _warn_on_failure(name: str, callback: Callback) -> Callback:
    def call(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            callback(study, trial)
        except Exception as e:  # noqa: BLE001 (a tracker's fault must not stop the study)
            print(f"warning: logging trial {trial.number} to {name} failed ({type(e).__name__}: {e})", file=sys.stderr)

    return call
