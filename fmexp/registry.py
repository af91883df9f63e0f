"""The one table of named components: each registered name maps to a dotted import path, and each kind
states what its components must be.

A name is checked against the table without importing anything (config validation runs before any
work, and ``prepare`` or ``report`` must not load code their DVC stages do not declare). ``resolve``
imports the component when it is used, and checks it against its kind's contract.

    >>> names("path")
    ['ot', 've', 'vp']
    >>> resolve("path", "ot")  # doctest: +SKIP
    <class 'fmexp.flow.paths.CondOTPath'>
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from fmexp.errors import ConfigError

__all__ = ["Kind", "KINDS", "names", "check_name", "check_choice", "resolve", "constructor_args", "did_you_mean"]


@dataclass(frozen=True)
class Kind:
    """One kind of component: its registered names and what each must be.

    ``base`` is the dotted path of the class that a component must subclass; without one, the
    component must be callable (``contract`` says with which arguments) or an instance of ``instance``.
    """

    contract: str
    entries: dict[str, str]
    base: str | None = None
    instance: str | None = None
    label: str = ""  # how messages name the kind ("dataset" for both toy and image datasets); default: its key


_PATHS = "fmexp.flow.paths"
_SOLVER = "fmexp.flow.ode.Solver"

KINDS: dict[str, Kind] = {
    "path": Kind(
        "a fmexp.flow.paths.ProbabilityPath (eq. 10-11: mu_t, sigma_t and their time derivatives)",
        {
            "ot": f"{_PATHS}.CondOTPath",
            "vp": f"{_PATHS}.VPPath",
            "ve": f"{_PATHS}.VEPath",
            "cosine": f"{_PATHS}.CosinePath",
            "polynomial": f"{_PATHS}.PolynomialPath",
            "linear_vp": f"{_PATHS}.LinearVPPath",
        },
        base=f"{_PATHS}.ProbabilityPath",
    ),
    "coupling": Kind(
        "a callable (x_0, x_1) -> (x_0, x_1): the paired batch",
        {"independent": "fmexp.flow.couplings.independent", "ot": "fmexp.flow.couplings.minibatch_ot"},
    ),
    "objective": Kind(
        "a fmexp.flow.losses.Objective: a per-sample loss and the field a trained network defines",
        {"fm": "fmexp.flow.losses.FlowMatching", "sm": "fmexp.flow.losses.ScoreMatching"},
        base="fmexp.flow.losses.Objective",
    ),
    "time_sampler": Kind(
        "a callable (n, generator, device, dtype) -> t of shape (n,) in [0, 1]",
        {"uniform": "fmexp.flow.methods.uniform_time", "logit_normal": "fmexp.flow.methods.logit_normal_time"},
        label="time sampler",
    ),
    "adaptive_solver": Kind(
        "a fmexp.flow.ode.Solver that takes rtol and atol",
        {name: f"fmexp.flow.ode.{name.upper()}" for name in ("dopri5", "dopri8", "bosh3")},
        instance=_SOLVER,
        label="ODE method",
    ),
    "fixed_solver": Kind(
        "a fmexp.flow.ode.Solver that takes a number of steps",
        {name: f"fmexp.flow.ode.{name.upper()}" for name in ("euler", "midpoint", "heun3", "rk4")},
        instance=_SOLVER,
        label="ODE method",
    ),
    "lr_schedule": Kind(
        "a callable (progress in [0, 1]) -> the learning rate's factor after the warm-up",
        {name: f"fmexp.training.schedules.{name}" for name in ("constant", "cosine", "linear")},
        label="lr schedule",
    ),
    "model": Kind(
        "a torch.nn.Module whose forward(x, t) takes t of shape (B,)",
        {"mlp": "fmexp.networks.models.MLP", "unet": "fmexp.networks.models.UNet"},
        base="torch.nn.Module",
    ),
    "activation": Kind(
        "a torch.nn.Module built without arguments",
        {
            "silu": "torch.nn.SiLU",
            "relu": "torch.nn.ReLU",
            "gelu": "torch.nn.GELU",
            "tanh": "torch.nn.Tanh",
            "softplus": "torch.nn.Softplus",
        },
        base="torch.nn.Module",
    ),
    "toy_dataset": Kind(
        "a callable (n, numpy Generator) -> (n, d) float array",
        {
            name: f"fmexp.data.toy.{fn}"
            for name, fn in (
                ("checkerboard", "checkerboard"),
                ("8gaussians", "eight_gaussians"),
                ("moons", "moons"),
                ("circles", "circles"),
                ("2spirals", "two_spirals"),
                ("swissroll", "swissroll"),
            )
        },
        label="dataset",
    ),
    "image_dataset": Kind(
        "a callable (*, root, size, channels, seed, download) -> fmexp.data.images.ImageSplits",
        {name: f"fmexp.data.images.{name}" for name in ("digits", "imagefolder", "cifar10", "mnist")},
        label="dataset",
    ),
    "distance": Kind(
        "a callable (x, y) -> float: a distance between two sample sets",
        {"w2": "fmexp.flow.metrics.wasserstein2", "sliced_w2": "fmexp.flow.metrics.sliced_wasserstein"},
    ),
    "fid_backend": Kind(
        "a callable (images, levels, *, classifier, inception_weights) -> (n, k) features",
        {
            "digits-classifier": "fmexp.data.features.classifier_features",
            "inception": "fmexp.data.features.inception_features",
        },
        label="feature backend",
    ),
}


def did_you_mean(value: Any, allowed: Collection[Any]) -> str:
    """``; did you mean 'value'?`` for the closest allowed name, or nothing."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def names(*kinds: str) -> list[str]:
    """The registered names of these kinds, sorted; imports nothing."""
    return sorted(n for kind in kinds for n in KINDS[kind].entries)


def check_name(kind: str | tuple[str, ...], name: str) -> None:
    """Raise ``ConfigError`` naming the kind, the bad name and the allowed names, unless ``name`` is
    registered (as one of the kinds, for a tuple)."""
    kinds = (kind,) if isinstance(kind, str) else kind
    labels = dict.fromkeys(KINDS[k].label or k for k in kinds)
    check_choice(" or ".join(labels), name, names(*kinds))


def check_choice(label: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise ``ConfigError`` naming ``label``, the bad value and the allowed values, unless it is one."""
    if value not in allowed:
        raise ConfigError(f"unknown {label} {value!r}; choose one of {list(allowed)}{did_you_mean(value, allowed)}")


def _import(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def resolve(kind: str, name: str) -> Any:
    """The component registered as ``name``, imported, and checked against its kind's contract."""
    check_name(kind, name)
    spec = KINDS[kind]
    obj = _import(spec.entries[name])
    if spec.base is not None:
        ok = inspect.isclass(obj) and issubclass(obj, _import(spec.base))
    elif spec.instance is not None:
        ok = isinstance(obj, _import(spec.instance))
    else:
        ok = callable(obj)
    if not ok:
        raise TypeError(f"{spec.entries[name]} is registered as {kind} {name!r} but is not {spec.contract}")
    return obj


def constructor_args(cls: Callable[..., Any]) -> list[str]:
    """The names of ``cls``'s constructor arguments, in order: the config keys a component reads."""
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
