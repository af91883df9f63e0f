"""fmexp: flow matching experiments (Lipman et al. 2022, arXiv 2210.02747).

The public API, imported lazily (PEP 562): ``import fmexp`` loads no torch, and ``from fmexp import
Method`` loads only what ``Method`` needs.

    >>> from fmexp import load_dataset, make_method, build_model, train, TrainConfig  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # the math
    "ProbabilityPath": "fmexp.flow.paths",
    "CondOTPath": "fmexp.flow.paths",
    "VPPath": "fmexp.flow.paths",
    "VEPath": "fmexp.flow.paths",
    "PathSample": "fmexp.flow.paths",
    "get_path": "fmexp.flow.paths",
    "Objective": "fmexp.flow.losses",
    "cfm_loss": "fmexp.flow.losses",
    "dsm_loss": "fmexp.flow.losses",
    "Method": "fmexp.flow.methods",
    "make_method": "fmexp.flow.methods",
    "get_coupling": "fmexp.flow.couplings",
    "integrate": "fmexp.flow.ode",
    "log_likelihood": "fmexp.flow.likelihood",
    "bits_per_dim": "fmexp.flow.metrics",
    # networks, data, training
    "build_model": "fmexp.networks.models",
    "Dataset": "fmexp.data.datasets",
    "load_dataset": "fmexp.data.datasets",
    "train": "fmexp.training.loop",
    "TrainResult": "fmexp.training.loop",
    "TrainState": "fmexp.training.state",
    "load_model": "fmexp.training.state",
    # config
    "TrainConfig": "fmexp.config.schema",
    "Params": "fmexp.config.schema",
    "RunConfig": "fmexp.config.schema",
    "load_params": "fmexp.config.load",
    "run_for": "fmexp.config.load",
    # errors
    "UserError": "fmexp.errors",
    "ConfigError": "fmexp.errors",
    "RunError": "fmexp.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fmexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from fmexp.config.load import load_params, run_for
    from fmexp.config.schema import Params, RunConfig, TrainConfig
    from fmexp.data.datasets import Dataset, load_dataset
    from fmexp.errors import ConfigError, RunError, UserError
    from fmexp.flow.couplings import get_coupling
    from fmexp.flow.likelihood import log_likelihood
    from fmexp.flow.losses import Objective, cfm_loss, dsm_loss
    from fmexp.flow.methods import Method, make_method
    from fmexp.flow.metrics import bits_per_dim
    from fmexp.flow.ode import integrate
    from fmexp.flow.paths import CondOTPath, PathSample, ProbabilityPath, VEPath, VPPath, get_path
    from fmexp.networks.models import build_model
    from fmexp.training.loop import TrainResult, train
    from fmexp.training.state import TrainState, load_model
