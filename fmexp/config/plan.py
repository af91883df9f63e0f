"""Config into objects, decided in one place: the device, the dataset, the model's spec, the method,
the divergence estimator, the FID backend, and the named random streams of a run.

Every "auto" rule lives here; ``resolve(run, data)`` returns the ``Plan``, which train.json records.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import asdict, dataclass

import torch

from fmexp import registry
from fmexp.config.load import to_plain
from fmexp.config.schema import DataConfig, ModelConfig, PairConfig, RunConfig
from fmexp.config.validate import path_context
from fmexp.data.datasets import Dataset, load_dataset, load_pair, max_pairwise_distance
from fmexp.errors import ConfigError
from fmexp.flow.bridges import Bridge
from fmexp.flow.methods import EmpiricalSource, Method
from fmexp.registry import Spec, constructor_args, names

__all__ = [
    "Streams",
    "Plan",
    "resolve",
    "device_for",
    "load_data",
    "model_spec",
    "model_args",
    "training_key",
    "build_method",
    "held_out",
    "auto_divergence",
    "auto_fid_backend",
]


@dataclass(frozen=True)
class Streams:
    """The seeds of a run's random streams, each named for what it draws (one generator per use, so
    that changing one use never shifts another's numbers)."""

    training: int  # batches, times and noise of the training loop
    validation: int  # the fixed validation batch and its dequantization
    curve: int  # the curve's source noise and Hutchinson probes
    sampling: int  # the source noise of the samples
    scoring: int  # the dequantization of the scored points
    curve_points: int  # the dequantization of the curve's held-out points
    probes: int  # the score stage's Hutchinson probes
    reference: int  # the dequantization of the held-out split that samples are compared with
    reflow: int  # the noise of a reflow round's couples: never the sample stage's
    straightness: int  # the starts of the score stage's straightness trajectories

    @classmethod
    def of(cls, seed: int) -> Streams:
        return cls(
            training=seed,
            validation=seed + 1,
            curve=seed + 2,
            sampling=seed + 3,
            scoring=seed + 4,
            curve_points=seed + 5,
            probes=seed + 7,
            reference=seed,
            reflow=seed + 8,
            straightness=seed + 9,
        )


@dataclass(frozen=True)
class Plan:
    """What a run's config and data decide."""

    device: torch.device
    images: bool
    model_spec: dict[str, object]
    method: Method
    divergence: str  # the score stage's (score.divergence, or the auto rule)
    curve_divergence: str  # the training curve's: always the auto rule
    fid_backend: str | None
    streams: Streams

    def record(self) -> dict[str, object]:
        """The decisions as plain values (train.json's ``plan``)."""
        m = self.method
        return {
            "device": str(self.device),
            "data": "images" if self.images else "flat",
            "model_spec": self.model_spec,
            "method": {
                "objective": m.objective,
                "path": repr(m.path),
                "time_sampler": _qualname(m.time_sampler),
                "coupling": _qualname(m.coupling),
            },
            "divergence": self.divergence,
            "curve_divergence": self.curve_divergence,
            "fid_backend": self.fid_backend,
            "fid_reference": "train split" if self.images else None,
            "distance_reference": "test split",
            "streams": asdict(self.streams),
        }


def _qualname(component: object) -> str:
    """``module.name`` of a function (a ``functools.partial``: its function and arguments), else ``repr``."""
    if isinstance(component, functools.partial):
        args = ", ".join(f"{k}={v!r}" for k, v in component.keywords.items())
        return f"{_qualname(component.func)}({args})"
    name = getattr(component, "__qualname__", None)
    return f"{component.__module__}.{name}" if name else repr(component)


def resolve(run: RunConfig, data: Dataset) -> Plan:
    """Every decision of one run, made once."""
    images = data.levels is not None
    divergence = run.score.divergence if run.score.divergence != "auto" else auto_divergence(data)
    return Plan(
        device=device_for(run),
        images=images,
        model_spec=model_spec(run.model, data, conditional=run.train.label_dropout is not None),
        method=build_method(run, data),
        divergence=divergence,
        curve_divergence=auto_divergence(data),
        fid_backend=auto_fid_backend(run, data) if images else None,
        streams=Streams.of(run.seed),
    )


def training_key(run: RunConfig) -> str:
    """A hash of everything that decides a run's training (all but the ``sample`` and ``score`` sections,
    ``train.checkpoint_every`` and ``train.nproc``, which make the same draws): a checkpoint is resumed
    only by a run with the same key."""
    plain = to_plain(run)
    del plain["sample"], plain["score"], plain["train"]["checkpoint_every"], plain["train"]["nproc"]
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def auto_fid_backend(run: RunConfig, data: Dataset) -> str:
    """``score.fid_backend: auto``: the digits classifier's features for digits, InceptionV3's otherwise."""
    if run.score.fid_backend != "auto":
        return run.score.fid_backend
    return "digits-classifier" if data.name == "digits" else "inception"


def device_for(run: RunConfig) -> torch.device:
    """``train.device`` (``auto``: a GPU where there is one)."""
    name = run.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_data(
    params_data: DataConfig,
    name: str,
    spec: Spec | None = None,
    pair: PairConfig | None = None,
    pair_specs: dict[str, Spec] | None = None,
) -> Dataset:
    """Dataset ``name`` as ``params_data`` sets it (image datasets read their folder and size); ``spec``:
    a dataset of the user's (``datasets.<name>`` in params.yaml); ``pair``: the pair ``name`` is
    (``pairs.<name>``), its datasets of the user's in ``pair_specs``."""
    if pair is not None:
        return load_pair(name, pair.source, pair.target, params_data.n_train, pair.n_test, params_data.seed, pair_specs)
    return load_dataset(
        name,
        params_data.n_train,
        params_data.n_test,
        params_data.seed,
        spec,
        **(
            {
                "root": params_data.root,
                "size": params_data.image_size,
                "channels": params_data.channels,
                "download": params_data.download,
            }
            if name in names("image_dataset")
            else {}
        ),
    )


DATA_ARGS = ("dim", "in_channels", "resolution", "num_classes")
"""The constructor arguments that the data decides, not ``model``: ``dim`` for flat data, and
``in_channels`` and ``resolution`` for images (``num_classes``: a conditional model's classes)."""


def model_args(name: str) -> list[str]:
    """The ``model`` config keys that registered model ``name`` reads: its constructor's arguments of the
    same names (``inspect.signature``), but those the data decides."""
    return [a for a in constructor_args(registry.resolve("model", name)) if a not in DATA_ARGS]


def model_spec(cfg: ModelConfig, data: Dataset, conditional: bool = False) -> dict[str, object]:
    """The model's ``_target_`` and constructor arguments for this data (``auto``: MLP if flat, U-Net if
    images): a registered model reads its arguments from the ``model`` section, a ``_target_`` mapping
    carries its own; either gets the data's ``dim``, or ``in_channels`` and ``resolution``, where its
    constructor takes them, and a ``conditional`` one (``train.label_dropout`` set) the data's
    ``num_classes``. Checkpoints store it (``fmexp.networks.models.build_model``)."""
    images = data.train.dim() == 4
    spec = cfg.name if cfg.name != "auto" else ("unet" if images else "mlp")
    if spec == "unet" and not images:
        raise ConfigError(
            f"model.name: unet needs image data (n, C, H, W); {data.name} has shape {tuple(data.train.shape)}"
        )
    target, given = registry.target("model", spec, "model.name")
    cls, _ = registry.check("model", spec, "model.name")
    available = {"in_channels": data.train.shape[1], "resolution": data.train.shape[2]} if images else {"dim": data.dim}
    if conditional and not data.num_classes:
        raise ConfigError(
            f"train.label_dropout: a class-conditional model needs labels; {data.name} has none (an image folder"
            " has them where every image sits in a class subfolder): set train.label_dropout to null"
        )
    if conditional:
        available["num_classes"] = data.num_classes
    derived = {k: available[k] for k in constructor_args(cls) if k in available and k not in given}
    if isinstance(spec, str):
        given = {k: (list(v) if isinstance(v := getattr(cfg, k), (list, tuple)) else v) for k in model_args(spec)}
    return {registry.TARGET: target, **derived, **given}


def build_method(run: RunConfig, data: Dataset) -> Method:
    """The run's method. A path that takes ``sigma_max`` (VE) without one set takes the largest pairwise
    distance of the training split as the model sees it (images dequantized with a fixed seed), and
    ``input_scale: path`` takes that split's std."""
    m = run.method
    context: dict[str, float] = path_context(m)
    train = data.model_space(data.train, torch.Generator().manual_seed(0))
    path_cls, path_args = registry.check("path", m.path, "method.path")
    if "sigma_max" not in context and "sigma_max" not in path_args and "sigma_max" in constructor_args(path_cls):
        context["sigma_max"] = max_pairwise_distance(train)
    path = registry.build("path", m.path, "method.path", **context)
    bridge = isinstance(path, Bridge)
    return Method(
        objective=m.objective,
        path=path,
        coupling=registry.build("coupling", m.coupling, "method.coupling", **({"sigma": path.sigma} if bridge else {})),
        time_sampler=registry.build("time_sampler", run.train.time_sampler, "train.time_sampler"),
        data_std=float(train.std()) if m.input_scale == "path" and not bridge else None,
        source=None if data.source is None else EmpiricalSource(data.source.train),
    )


def held_out(method: Method, data: Dataset) -> Method:
    """``method`` with its starts drawn from the held-out split of the pair's source, without replacement
    (the sample and score stages); as it is for a Gaussian source."""
    if data.source is None:
        return method
    return dataclasses.replace(method, source=EmpiricalSource(data.source.test, replace=False))


def auto_divergence(data: Dataset) -> str:
    """``score.divergence: auto``: the exact trace for flat data, Hutchinson for images."""
    return "exact" if data.levels is None else "hutchinson"
