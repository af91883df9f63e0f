"""Validation of a loaded config: one validator per section, each returning ``dotted.key: reason``
strings for every out-of-range value and unknown name. Names are checked against the registry table
(``fmexp.registry``); a ``_target_`` mapping is imported and its arguments bound, and each method's
path is built, so that a bad component fails here, before any work."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fmexp import registry
from fmexp.config.checks import Errors
from fmexp.config.sampling import guidance_errors, sample_errors, score_errors
from fmexp.config.schema import (
    DataConfig,
    MethodConfig,
    ModelConfig,
    Params,
    RunConfig,
    TrainConfig,
)
from fmexp.errors import ConfigError
from fmexp.flow.units import EULER_STEPS, REFLOW_STEPS
from fmexp.registry import check_spec, names

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "dataset_names",
    "pair_method_error",
    "path_context",
    "component_targets",
    "reflow_cell_error",
    "validate_params",
    "validate_run",
]

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


INPUT_SCALES = ("path", "none")
"""``model.input_scale``: ``path`` (``ProbabilityPath.input_scale``) or ``none``."""


def dataset_names(own: Iterable[str] = (), pairs: Iterable[str] = ()) -> list[str]:
    """Every registered dataset (the 2-D toys, then the image datasets), then the user's ``own``, then the
    ``pairs``: every name a cell, a study or ``per_dataset`` may give as its dataset."""
    return names("toy_dataset") + names("image_dataset") + list(own) + list(pairs)


def _pair_errors(p: Params) -> list[str]:
    """Each pair (``pairs.<name>``): a new name, and a source and target among the flat datasets (an image
    pair is not supported). That their dimensions agree is checked where they are drawn (``prepare``)."""
    e = Errors()
    flat = names("toy_dataset") + list(p.datasets)
    for name, pair in p.pairs.items():
        if name in dataset_names(p.datasets):
            e.append(f"pairs.{name}: {name!r} is a dataset's name; give the pair another name")
        for side in ("source", "target"):
            value = getattr(pair, side)
            if value in names("image_dataset"):
                e.append(f"pairs.{name}.{side}: {value!r} is an image dataset; a pair joins flat datasets {flat}")
            else:
                e.one_of(f"pairs.{name}.{side}", value, flat)
        e.positive(f"pairs.{name}.n_test", pair.n_test)
    return e


def pair_method_error(pair: str, method_key: str, m: MethodConfig) -> str | None:
    """Why method ``m`` cannot run on pair ``pair``, whose source is data, or None
    (``fmexp.flow.methods.source_error``)."""
    from fmexp.flow.methods import source_error

    try:
        path = registry.build("path", m.path, f"{method_key}.path", **path_context(m))
    except ConfigError as error:
        return str(error)
    reason = source_error(m.objective, path)
    return f"{method_key}: {reason} (pairs.{pair} flows from data)" if reason else None


def _dataset_errors(datasets: dict[str, Any]) -> list[str]:
    """The user's datasets (``datasets.<name>: {_target_: ...}``, a flat data generator): a new name and a
    valid spec. Their targets are imported where the data is made (``prepare``, a sweep), not here: a
    stage that reads the prepared file must not load the generator's code."""
    e = Errors()
    for name, spec in datasets.items():
        if name in dataset_names():
            e.append(f"datasets.{name}: {name!r} is fmexp's own dataset; give yours another name")
        e += check_spec("toy_dataset", spec, f"datasets.{name}")
    return e


def method_errors(key: str, m: MethodConfig) -> list[str]:
    e = Errors()
    e.one_of(f"{key}.objective", m.objective, names("objective"))
    e += check_spec("path", m.path, f"{key}.path")
    e += check_spec("coupling", m.coupling, f"{key}.coupling")
    e.one_of(f"{key}.input_scale", m.input_scale, INPUT_SCALES)
    e.within(f"{key}.sigma_min", m.sigma_min, 0, 1)
    if m.sigma_max is not None and m.sigma_max <= m.sigma_min:
        e.append(f"{key}.sigma_max: must exceed sigma_min, got {m.sigma_max}")
    return e or _component_errors(key, m)


def path_context(m: MethodConfig) -> dict[str, float]:
    """What fmexp passes to a path that takes it: ``sigma_min``, and ``sigma_max`` where set (else the
    training data decides it: ``fmexp.config.plan.build_method``)."""
    return {"sigma_min": m.sigma_min, **({"sigma_max": m.sigma_max} if m.sigma_max is not None else {})}


def _component_errors(key: str, m: MethodConfig) -> list[str]:
    """Import and build the method's path and check its coupling: a target that does not import, is not
    of its kind or takes no such argument, and an objective the path does not define (score matching
    needs ``a_0 > 0``), before any work."""
    from fmexp.flow.methods import objective_error  # torch: not for `import fmexp.cli`

    try:
        path = registry.build("path", m.path, f"{key}.path", **path_context(m))
        registry.check("coupling", m.coupling, f"{key}.coupling")
    except ConfigError as error:
        return [str(error)]
    reason = objective_error(m.objective, path)
    return [f"{key}: {reason}"] if reason else []


def component_targets(run: RunConfig) -> dict[str, str]:
    """The dotted import path of each component the run names, by its config key (``auto``: no model key)."""
    specs = {
        "method.path": ("path", run.method.path),
        "method.coupling": ("coupling", run.method.coupling),
        "train.time_sampler": ("time_sampler", run.train.time_sampler),
        **({"model.name": ("model", run.model.name)} if run.model.name != "auto" else {}),
    }
    return {key: registry.target(kind, spec, key)[0] for key, (kind, spec) in specs.items()}


def _spec_errors(kind: str, spec: Any, key: str) -> list[str]:
    """``spec``'s shape, then (a ``_target_`` mapping) its import and arguments."""
    errors = check_spec(kind, spec, key)
    if not errors and not isinstance(spec, str):
        try:
            registry.check(kind, spec, key)
        except ConfigError as error:
            errors.append(str(error))
    return errors


def data_errors(data: DataConfig) -> list[str]:
    e = Errors()
    for key in ("n_train", "n_test", "image_size"):
        e.positive(f"data.{key}", getattr(data, key))
    e.one_of("data.channels", data.channels, [1, 3])
    return e


def model_errors(model: ModelConfig) -> list[str]:
    e = Errors()
    if model.name != "auto":
        e += _spec_errors("model", model.name, "model.name")
    for key in ("channels", "num_res_blocks", "width", "depth", "time_embed_dim", "fourier_scale"):
        e.positive(f"model.{key}", getattr(model, key))
    if not model.channel_mults or min(model.channel_mults) < 1:
        e.append(f"model.channel_mults: must be a non-empty list of positive ints, got {model.channel_mults}")
    e.within("model.dropout", model.dropout, 0, 1)
    e.one_of("model.activation", model.activation, names("activation"))
    if model.fourier_features < 0:
        e.append(f"model.fourier_features: must be >= 0, got {model.fourier_features}")
    widths = sorted({model.channels * m for m in model.channel_mults})
    if model.head_channels < 0 or (model.head_channels and any(w % model.head_channels for w in widths)):
        e.append(
            f"model.head_channels: must be 0 (one head) or divide the U-Net's widths {widths},"
            f" got {model.head_channels}"
        )
    return e


def train_errors(train: TrainConfig) -> list[str]:
    e = Errors()
    for key in ("steps", "batch_size", "lr", "eval_every", "val_batch", "nproc", "curve_tol"):
        e.positive(f"train.{key}", getattr(train, key))
    if train.nproc > 0 and train.batch_size % train.nproc:
        e.append(f"train.batch_size: {train.batch_size} must split evenly over train.nproc={train.nproc} processes")
    for key in ("warmup_steps", "grad_clip", "weight_decay", "checkpoint_every"):
        e.non_negative(f"train.{key}", getattr(train, key))
    e.within("train.ema_decay", train.ema_decay, 0, 1)
    if train.curve_points < 0:
        e.append(f"train.curve_points: must be >= 0, got {train.curve_points}")
    e.one_of("train.device", train.device, DEVICES)
    e.one_of("train.lr_schedule", train.lr_schedule, names("lr_schedule"))
    e += _spec_errors("time_sampler", train.time_sampler, "train.time_sampler")
    e.one_of("train.precision", train.precision, PRECISIONS)
    return e


_SECTIONS: list[Callable[[Any], list[str]]] = [
    lambda c: data_errors(c.data),
    lambda c: model_errors(c.model),
    lambda c: train_errors(c.train),
    lambda c: sample_errors(c.sample),
    lambda c: score_errors(c.score, c.sample),
]


def validate_params(p: Params) -> list[str]:
    """Every out-of-range value and unknown name in ``p`` (but its ``per_dataset`` entries), as
    ``dotted.key: reason``."""
    e = Errors()
    e += _dataset_errors(p.datasets)
    e += _pair_errors(p)
    for d in p.pipeline.datasets:
        e.one_of("pipeline.datasets", d, dataset_names(p.datasets, p.pairs))
    for name in p.pipeline.methods:
        e.one_of("pipeline.methods", name, sorted(p.methods))
    if p.pipeline.workers < 1:
        e.append(f"pipeline.workers: must be at least 1, got {p.pipeline.workers}")
    e += [f"pipeline.seeds: {s} must be >= 0" for s in p.pipeline.seeds if s < 0]
    for key in ("datasets", "methods", "seeds"):
        if not getattr(p.pipeline, key):
            e.append(f"pipeline.{key}: must not be empty")
    for dataset, methods in p.pipeline.methods_by_dataset.items():
        e.one_of("pipeline.methods_by_dataset", dataset, dataset_names(p.datasets, p.pairs))
        for name in methods:
            e.one_of(f"pipeline.methods_by_dataset.{dataset}", name, sorted(p.methods))
    for cell in p.pipeline.cells or []:
        dataset, _, method = cell.partition("/")
        if dataset not in p.pipeline.datasets or method not in p.pipeline.methods_of(dataset):
            e.append(
                f"pipeline.cells: {cell!r} must be 'dataset/method' with a dataset of pipeline.datasets"
                f" {p.pipeline.datasets} and one of its methods (pipeline.methods, or its methods_by_dataset entry)"
            )
    for name, m in p.methods.items():
        e += method_errors(f"methods.{name}", m)
    e += _reflow_errors(p)
    for section in _SECTIONS:
        e += section(p)
    return e


def _reflow_errors(p: Params) -> list[str]:
    """``reflow``: positive rounds and couples, and cells that ``reflow_cell_error`` accepts. A cell that the
    pipeline does not run is not reflowed either (``Params.rounds_of``)."""
    e = Errors()
    e.positive("reflow.rounds", p.reflow.rounds)
    e.positive("reflow.n_pairs", p.reflow.n_pairs)
    e += [f"reflow.cells: {reason}" for cell in p.reflow.cells if (reason := reflow_cell_error(p, cell)) is not None]
    return e


def reflow_cell_error(p: Params, cell: str) -> str | None:
    """Why ``cell`` ('dataset/method') cannot be reflowed, or None: reflow runs on fmexp's or the user's flat
    data, from a flow-matching model (a score-matching model's couples would come from its probability-flow
    ODE, which it did not regress)."""
    dataset, _, method = cell.partition("/")
    if dataset not in dataset_names(p.datasets, p.pairs) or method not in p.methods:
        return (
            f"{cell!r} must be 'dataset/method' with a dataset of"
            f" {dataset_names(p.datasets, p.pairs)} and a method of {sorted(p.methods)}"
        )
    if dataset in p.pairs or dataset in names("image_dataset"):
        return f"{cell!r}: reflow runs on flat data from the Gaussian source, not on {dataset}"
    if p.methods[method].objective != "fm":
        return (
            f"{cell!r}: reflow needs a flow-matching model (objective fm); {method} has objective"
            f" {p.methods[method].objective!r}"
        )
    return None


def validate_run(r: RunConfig) -> list[str]:
    """Every out-of-range value and unknown name of one run."""
    e = Errors()
    if r.reflow is not None and (
        "euler" not in r.sample.fixed_solvers or not set(REFLOW_STEPS) <= set(r.sample.nfe_ladder)
    ):
        e.append(
            f"sample: a reflow round is scored after {list(REFLOW_STEPS)} Euler steps, its own and the previous"
            f" flow's: sample.fixed_solvers must hold euler and sample.nfe_ladder {list(REFLOW_STEPS)}; got"
            f" {r.sample.fixed_solvers} and {r.sample.nfe_ladder}"
        )
    if r.pair is not None:
        for side in ("source", "target"):
            e.one_of(f"pairs.{r.dataset}.{side}", getattr(r.pair, side), names("toy_dataset") + list(r.pair_specs))
        if not e and (reason := pair_method_error(r.dataset, f"methods.{r.method_name}", r.method)):
            e.append(reason)
        if "euler" not in r.sample.fixed_solvers or not set(EULER_STEPS) <= set(r.sample.nfe_ladder):
            e.append(
                f"sample: a pair ({r.dataset}) is scored after {list(EULER_STEPS)} Euler steps: sample.fixed_solvers"
                f" must hold euler and sample.nfe_ladder {list(EULER_STEPS)}; got {r.sample.fixed_solvers} and"
                f" {r.sample.nfe_ladder}"
            )
        if r.sample.n_samples > r.pair.n_test:
            e.append(
                f"sample.n_samples: a pair's samples start from its source's held-out points, without"
                f" replacement: at most pairs.{r.dataset}.n_test = {r.pair.n_test}, got {r.sample.n_samples}"
            )
    elif r.dataset_spec is None:
        e.one_of("dataset", r.dataset, dataset_names())
    else:
        e += check_spec("toy_dataset", r.dataset_spec, f"datasets.{r.dataset}")
    e += method_errors("method", r.method)
    for section in _SECTIONS:
        e += section(r)
    e += guidance_errors(r)
    return e or _grid_errors(r)


def _grid_errors(r: RunConfig) -> list[str]:
    """A time grid of ``sample.grids`` that the run's path does not define (``edm`` needs a Gaussian
    path's noise-to-signal ratio, which a bridge has not)."""
    path = registry.build("path", r.method.path, "method.path", **path_context(r.method))
    errors = []
    for name in r.sample.grids:
        try:
            registry.resolve("time_grid", name)(path, 2)
        except ValueError as error:
            errors.append(f"sample.grids: {name!r} does not fit method {r.method_name!r}: {error}")
    return errors
