"""The one table of named components: each registered name maps to a dotted import path, and each kind
states what its components must be.

Wherever a config names a component it takes a *spec*: a registered name, or Hydra's ``_target_``
mapping with the constructor's arguments, whose ``_target_`` is a dotted import path (a user's
``plugins.paths.Cosine``) or a registered name (``{_target_: vp, beta_max: 10}``). A registered name is
the mapping ``{_target_: <its dotted path>}``: fmexp's components go through the same door.

``check_spec`` reads a spec's shape without importing anything (config validation runs before any
work, and ``prepare`` or ``report`` must not load code their DVC stages do not declare); ``check``
imports a mapping's target and binds its arguments; ``build`` instantiates a spec (hydra-core's
``instantiate``) and checks the result against its kind's contract. ``resolve`` imports a registered
name.

    >>> names("path")
    ['bridge', 'brownian_bridge', 'cosine', 'linear_vp', 'ot', 'polynomial', 've', 'vp']
    >>> target("path", {"_target_": "polynomial", "power": 2})
    ('fmexp.flow.paths.PolynomialPath', {'power': 2})
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fmexp.errors import ConfigError

__all__ = [
    "Kind",
    "KINDS",
    "Spec",
    "TARGET",
    "names",
    "check_name",
    "check_choice",
    "resolve",
    "target",
    "check_spec",
    "check",
    "build",
    "constructor_args",
    "did_you_mean",
]

TARGET = "_target_"
"""The key of a component mapping that names what to instantiate (Hydra's)."""


@dataclass(frozen=True)
class Kind:
    """One kind of component: its registered names and what each must be.

    ``base`` is the dotted path of the class that a component must subclass; without one, the
    component must be callable (``contract`` says with which arguments) or an instance of ``instance``.
    """

    contract: str
    entries: dict[str, str]
    base: str | tuple[str, ...] | None = None  # one class, or several of which the component may be any
    instance: str | None = None
    label: str = ""  # how messages name the kind ("dataset" for both toy and image datasets); default: its key


_PATHS = "fmexp.flow.paths"
_SOLVER = "fmexp.flow.ode.Solver"

KINDS: dict[str, Kind] = {
    "path": Kind(
        "a fmexp.flow.paths.ProbabilityPath (eq. 10-11: mu_t, sigma_t and their time derivatives), or a"
        " fmexp.flow.bridges.Bridge (a path between a coupled pair: data-to-data flows)",
        {
            "ot": f"{_PATHS}.CondOTPath",
            "vp": f"{_PATHS}.VPPath",
            "ve": f"{_PATHS}.VEPath",
            "cosine": f"{_PATHS}.CosinePath",
            "polynomial": f"{_PATHS}.PolynomialPath",
            "linear_vp": f"{_PATHS}.LinearVPPath",
            "bridge": "fmexp.flow.bridges.ConstantBridge",
            "brownian_bridge": "fmexp.flow.bridges.BrownianBridge",
        },
        base=(f"{_PATHS}.ProbabilityPath", "fmexp.flow.bridges.Bridge"),
    ),
    "coupling": Kind(
        "a callable (x_0, x_1) -> (x_0, x_1): the paired batch (given the training generator as generator=, where it"
        " takes one)",
        {
            "independent": "fmexp.flow.couplings.independent",
            "ot": "fmexp.flow.couplings.minibatch_ot",
            "schrodinger_bridge": "fmexp.flow.couplings.schrodinger_bridge",
        },
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
        {name: f"fmexp.flow.ode.{name.upper()}" for name in ("euler", "midpoint", "heun2", "heun3", "rk4")},
        instance=_SOLVER,
        label="ODE method",
    ),
    "time_grid": Kind(
        "a callable (path, steps) -> steps + 1 times (float64) from 0 to 1: a fixed-step solve's grid",
        {"uniform": "fmexp.flow.grids.uniform", "edm": "fmexp.flow.grids.edm"},
        label="time grid",
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
                ("8gaussians_tcfm", "eight_gaussians_tcfm"),
                ("moons_tcfm", "moons_tcfm"),
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


def _bases(kind: Kind) -> tuple[type, ...]:
    """The classes a component of ``kind`` must subclass one of (none: a callable kind)."""
    base = kind.base
    return tuple(_import(b) for b in ((base,) if isinstance(base, str) else base or ()))


@functools.cache
def resolve(kind: str, name: str) -> Any:
    """The component registered as ``name``, imported, and checked against its kind's contract."""
    check_name(kind, name)
    spec = KINDS[kind]
    obj = _import(spec.entries[name])
    if spec.base is not None:
        ok = inspect.isclass(obj) and issubclass(obj, _bases(spec))
    elif spec.instance is not None:
        ok = isinstance(obj, _import(spec.instance))
    else:
        ok = callable(obj)
    if not ok:
        raise TypeError(f"{spec.entries[name]} is registered as {kind} {name!r} but is not {spec.contract}")
    return obj


Spec = str | Mapping[str, Any]
"""A component as a config names it: a registered name, or ``{_target_: ..., **constructor arguments}``."""


def _label(kind: str) -> str:
    return KINDS[kind].label or kind


def target(kind: str, spec: Spec, key: str = "") -> tuple[str, dict[str, Any]]:
    """The dotted import path and the constructor arguments of ``spec``; imports nothing. A bad shape
    or an unknown registered name raises ``ConfigError`` naming ``key``."""
    where = f"{key}: " if key else ""
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get(TARGET), str) and spec[TARGET]:
        name, args = spec[TARGET], {str(k): v for k, v in spec.items() if k != TARGET}
    else:
        raise ConfigError(
            f"{where}a {_label(kind)} is a registered name ({names(kind)}) or a mapping with {TARGET}"
            f" (a dotted import path or a registered name) and the constructor's arguments; got {spec!r}"
        )
    if "." in name:
        return name, args
    allowed = names(kind)
    if name not in allowed:
        raise ConfigError(
            f"{where}{name!r} is not one of {allowed}{did_you_mean(name, allowed)}; or name your own {_label(kind)}"
            f" by {{{TARGET}: a dotted import path}}"
        )
    return KINDS[kind].entries[name], args


def check_spec(kind: str, spec: Spec, key: str) -> list[str]:
    """``target``'s error, if any, as a list (config validation collects them); imports nothing."""
    try:
        target(kind, spec, key)
    except ConfigError as e:
        return [str(e)]
    return []


def _import_target(dotted: str, key: str) -> Any:
    try:
        return _import(dotted)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{key}: {TARGET} {dotted!r} does not import: {type(e).__name__}: {e}") from None


def _parameters(obj: Any) -> tuple[list[str], bool]:
    """The keyword-passable argument names of ``obj``'s signature, and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: take what is given
        return [], True
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def check(kind: str, spec: Spec, key: str) -> tuple[Any, dict[str, Any]]:
    """Import ``spec``'s target and check that it can be what ``kind`` needs and that it takes the given
    arguments: ``ConfigError`` naming ``key``, the target and the reason. Returns the target and args."""
    dotted, args = target(kind, spec, key)
    obj = _import_target(dotted, key)
    kind_ = KINDS[kind]
    if kind_.base is not None and inspect.isclass(obj) and not issubclass(obj, _bases(kind_)):
        raise ConfigError(f"{key}: {TARGET} {dotted!r} is not a {_label(kind)}: a {_label(kind)} is {kind_.contract}")
    if not callable(obj) and not (kind_.instance and isinstance(obj, _import(kind_.instance))):
        raise ConfigError(f"{key}: {TARGET} {dotted!r} is not callable: a {_label(kind)} is {kind_.contract}")
    named, var_kw = _parameters(obj)
    unknown = [a for a in args if a not in named]
    if unknown and not var_kw:
        raise ConfigError(
            f"{key}: {dotted} takes no argument {unknown[0]!r}{did_you_mean(unknown[0], named)}; it takes {named}"
        )
    return obj, args


def build(kind: str, spec: Spec, key: str, **context: Any) -> Any:
    """The component ``spec`` names, instantiated by hydra-core's ``instantiate`` and checked against its
    kind's contract. ``context`` holds the arguments fmexp derives (a path's ``sigma_min``, a model's
    ``dim``): each is passed where the target takes it and the spec does not set it. A function of a
    callable kind (a coupling, a time sampler) is the component itself, its arguments bound."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    obj, args = check(kind, spec, key)
    dotted = target(kind, spec, key)[0]
    named, var_kw = _parameters(obj)
    given = {**{k: v for k, v in context.items() if k in named and k not in args}, **args}
    kind_ = KINDS[kind]
    as_is = kind_.base is None and kind_.instance is None and not inspect.isclass(obj)
    if kind_.instance is not None and isinstance(obj, _import(kind_.instance)):
        component = obj
    elif as_is and not given:
        component = obj
    else:
        try:
            component = instantiate({TARGET: dotted, **given}, _partial_=as_is, _convert_="all")
        except InstantiationException as e:
            cause = e.__cause__ or e
            raise ConfigError(f"{key}: {dotted}({_call(given)}) failed: {type(cause).__name__}: {cause}") from None
    ok = (
        isinstance(component, _bases(kind_))
        if kind_.base is not None
        else isinstance(component, _import(kind_.instance))
        if kind_.instance is not None
        else callable(component)
    )
    if not ok:
        raise ConfigError(
            f"{key}: {dotted} gave a {type(component).__name__}, which is not a {_label(kind)}: a {_label(kind)}"
            f" is {kind_.contract}"
        )
    return component


def _call(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def constructor_args(cls: Callable[..., Any]) -> list[str]:
    """The names of ``cls``'s constructor arguments, in order: the config keys a component reads."""
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
