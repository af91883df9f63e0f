"""The typed schema of ``params.yaml`` (dataclasses through OmegaConf) and its validation.

``load_params`` fails at load time on an unknown key, a wrong type or an out-of-range value, with
the file and the dotted key in the message. Overrides use Hydra's override grammar
(``train.lr=1e-3``, ``+methods.fm_ot2={objective: fm, path: ot}``; ``fmexp.overrides``), the same
syntax that ``dvc exp run -S`` writes into params.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from fmexp.overrides import ConfigError, apply_overrides, not_one_of, parse_overrides, read_yaml, structured, to_object
from fmexp.signals import held

__all__ = [
    "ConfigError", "PipelineConfig", "DataConfig", "MethodConfig", "ModelConfig", "TrainConfig", "SampleConfig", "ScoreConfig",
    "Params", "RunConfig", "PER_DATASET_SECTIONS", "load_params", "run_config", "to_plain",
]


@dataclass
class DataConfig:
    """Sizes and seed of the prepared splits (fixed for every run)."""

    n_train: int = 50_000  # 2-D data; image datasets have their own fixed split
    n_test: int = 2_000
    seed: int = 0
    root: str = "data/raw"  # image folders and torchvision datasets are read from here
    image_size: int = 32  # imagefolder: resize and centre-crop to this side
    channels: int = 3  # imagefolder: 1 (grey) or 3 (RGB)
    download: bool = False  # torchvision datasets: fetch when missing (off: nothing is downloaded)


@dataclass
class MethodConfig:
    """An objective on a path: ``fm`` (CFM, eq. 14) or ``sm`` (DSM baseline), on ``ot``, ``vp`` or ``ve``."""

    objective: str = "fm"
    path: str = "ot"
    sigma_min: float = 1e-4  # std of p_t(x | x_1) at t=1, for every path
    sigma_max: float | None = None  # VE only; null: the largest pairwise distance of the training data
    coupling: str = "independent"  # independent | ot (minibatch OT, Tong et al. 2023)


@dataclass
class ModelConfig:
    """``auto``: the MLP for flat data, the U-Net for images. Each reads its own fields."""

    name: str = "auto"  # auto | mlp | unet
    width: int = 256  # mlp
    depth: int = 3  # mlp
    activation: str = "silu"  # mlp
    fourier_features: int = 0  # mlp: random Fourier features of x (0: none)
    fourier_scale: float = 1.0  # mlp: their frequencies' std, in cycles per unit of x
    time_embed_dim: int = 32
    channels: int = 32  # unet (the paper's CIFAR-10: 256)
    channel_mults: list[int] = field(default_factory=lambda: [1, 2])  # unet (CIFAR-10: [1, 2, 2, 2])
    num_res_blocks: int = 1  # unet (CIFAR-10: 2)
    attention_resolutions: list[int] = field(default_factory=list)  # unet (CIFAR-10: [16])
    dropout: float = 0.0  # unet


@dataclass
class TrainConfig:
    """Optimization of one run: AdamW with linear warmup, gradient clipping and EMA weights."""

    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # constant | cosine | linear: the decay to 0 at ``steps`` after the warmup
    time_sampler: str = "uniform"  # uniform | logit_normal: the distribution of t in the loss (every method alike)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.995
    eval_every: int = 500  # rows of the convergence curve; the last step always gets one
    val_batch: int = 2048  # held-out points for the validation loss
    checkpoint_every: int = 0  # 0: only at the end
    curve_points: int = 256  # held-out points for the NLL and dopri5-NFE columns of the curve; 0: none
    curve_tol: float = 1e-5  # dopri5 rtol = atol for those columns
    device: str = "auto"  # auto | cpu | cuda
    nproc: int = 1  # processes (GPUs) that share each batch: the train stage launches torchrun when > 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast for the loss; fp16 adds a gradient scaler)


@dataclass
class SampleConfig:
    """dopri5 at the paper's tolerance, plus a ladder of fixed-step solvers for the NFE curve (Fig. 7)."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float | None = None  # null: equal to rtol (the paper's atol = rtol = 1e-5)
    steps: int = 100  # used only when ``method`` is a fixed-step solver
    n_samples: int = 2000
    fixed_solvers: list[str] = field(default_factory=lambda: ["euler", "midpoint", "rk4"])
    nfe_ladder: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    n_trajectories: int = 12
    batch_size: int | None = None  # samples per ODE solve: peak memory is bounded by it (null: all at once)
    ladder_samples: int | None = None  # the first this many samples also run the NFE ladder (null: all of them)

    @property
    def tolerances(self) -> dict[str, float]:
        """``rtol`` and ``atol`` as keyword arguments of ``integrate`` and ``log_likelihood``."""
        return {"rtol": self.rtol, "atol": self.rtol if self.atol is None else self.atol}


@dataclass
class ScoreConfig:
    """Exact NLL on the held-out split and a sample distance to it."""

    n_points: int = 1000
    divergence: str = "auto"  # auto (exact for flat data, hutchinson for images) | exact | hutchinson
    probe: str = "rademacher"  # hutchinson probes: rademacher | gaussian
    probes: int = 1  # hutchinson probes per point, fixed over the solve; the estimate's variance falls as 1/probes
    dequant_draws: int = 1  # images: K dequantizations per point, combined by log-mean-exp (Table 4)
    fid_backend: str = "auto"  # auto (digits-classifier for digits, else inception) | digits-classifier | inception | none (no FID)
    fid_draws: int = 1  # images: FID is the mean over this many disjoint draws of n_samples / fid_draws samples (1: all of them at once)
    inception_weights: str | None = None  # local InceptionV3 weights file for the inception backend
    distance: str = "w2"  # w2 | sliced_w2
    density_grid: int = 40  # side of the grid on which 2-D densities are drawn (Fig. 4); 0: none
    batch_size: int | None = None  # held-out points per likelihood solve (null: all at once)
    density_times: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])  # the times t of p_t drawn (Fig. 4)


@dataclass
class SweepConfig:
    studies: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """The axes of the DVC matrix: every dataset x method x seed is one run."""

    datasets: list[str] = field(default_factory=lambda: ["checkerboard", "8gaussians"])
    methods: list[str] = field(default_factory=lambda: ["fm_ot", "fm_vp", "sm_vp", "fm_ve"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    workers: int = 1  # processes per stage that run its seeds side by side, each with cores // workers threads (at least 1)


@dataclass
class Params:
    """The whole of ``params.yaml``: the pipeline's axes, the named methods, one section per stage."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    methods: dict[str, MethodConfig] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    per_dataset: dict[str, list[str]] = field(default_factory=dict)  # overrides of PER_DATASET_SECTIONS, per dataset

    def run(self, dataset: str, method: str, seed: int) -> RunConfig:
        """The config of one pipeline run: one dataset, one named method, one seed, with the
        dataset's ``per_dataset`` overrides applied."""
        datasets = _names()["dataset"]
        if dataset not in datasets:
            raise ConfigError(not_one_of("dataset", dataset, datasets))
        if method not in self.methods:
            raise ConfigError(not_one_of("method", method, sorted(self.methods)))
        run = RunConfig(dataset=dataset, method_name=method, method=self.methods[method], seed=seed,
                        data=self.data, model=self.model, train=self.train, sample=self.sample, score=self.score)
        overrides = self.per_dataset.get(dataset, [])
        return run_config(run, overrides, f"per_dataset.{dataset}") if overrides else run


@dataclass
class RunConfig:
    """Everything one train/sample/score run reads; a sweep trial is one of these."""

    dataset: str = "checkerboard"
    method_name: str = "fm_ot"
    method: MethodConfig = field(default_factory=MethodConfig)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


def _names() -> dict[str, list[str]]:
    # Imported lazily: the registries live beside the math they name.
    from fmexp.couplings import COUPLINGS
    from fmexp.data import DATASETS
    from fmexp.features import FEATURE_BACKENDS
    from fmexp.images import IMAGE_DATASETS
    from fmexp.likelihood import DIVERGENCES, PROBES
    from fmexp.methods import OBJECTIVES, TIME_SAMPLERS
    from fmexp.metrics import DISTANCES
    from fmexp.models import ACTIVATIONS, MODELS
    from fmexp.ode import SOLVERS
    from fmexp.paths import PATHS
    from fmexp.training import LR_SCHEDULES

    return {
        "dataset": sorted(DATASETS) + list(IMAGE_DATASETS), "objective": list(OBJECTIVES), "path": sorted(PATHS), "coupling": sorted(COUPLINGS),
        "model": ["auto", *sorted(MODELS)], "activation": sorted(ACTIVATIONS), "solver": sorted(SOLVERS),
        "fixed": sorted(n for n, s in SOLVERS.items() if not s.adaptive), "divergence": ["auto", *DIVERGENCES], "probe": list(PROBES),
        "fid_backend": ["auto", "none", *FEATURE_BACKENDS],
        "distance": sorted(DISTANCES), "device": ["auto", "cpu", "cuda"], "precision": ["fp32", "bf16", "fp16"],
        "lr_schedule": list(LR_SCHEDULES), "time_sampler": list(TIME_SAMPLERS),
    }


def _method_errors(key: str, m: MethodConfig, names: dict[str, list[str]]) -> list[str]:
    errors = []
    for attr, kind in (("objective", "objective"), ("path", "path"), ("coupling", "coupling")):
        if getattr(m, attr) not in names[kind]:
            errors.append(not_one_of(f"{key}.{attr}", getattr(m, attr), names[kind]))
    if not 0 <= m.sigma_min < 1:
        errors.append(f"{key}.sigma_min: must lie in [0, 1), got {m.sigma_min}")
    if m.path == "ve" and m.sigma_min <= 0:
        errors.append(f"{key}.sigma_min: the ve path needs sigma_min > 0, got {m.sigma_min}")
    if m.sigma_max is not None and m.sigma_max <= m.sigma_min:
        errors.append(f"{key}.sigma_max: must exceed sigma_min, got {m.sigma_max}")
    if m.objective == "sm" and m.path == "ot":
        errors.append(f"{key}: objective 'sm' needs a diffusion path (vp, ve): the ot path has mu_0 = 0")
    return errors


def _section_errors(model: ModelConfig, train: TrainConfig, sample: SampleConfig, score: ScoreConfig, data: DataConfig,
                    names: dict[str, list[str]]) -> list[str]:
    errors = []

    def positive(key: str, value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            errors.append(f"{key}: must be a positive finite number, got {value}")

    def one_of(key: str, value: str, kind: str) -> None:
        if value not in names[kind]:
            errors.append(not_one_of(key, value, names[kind]))

    for key in ("n_train", "n_test"):
        positive(f"data.{key}", getattr(data, key))
    one_of("model.name", model.name, "model")
    for key in ("channels", "num_res_blocks"):
        positive(f"model.{key}", getattr(model, key))
    if not model.channel_mults or min(model.channel_mults) < 1:
        errors.append(f"model.channel_mults: must be a non-empty list of positive ints, got {model.channel_mults}")
    if not 0 <= model.dropout < 1:
        errors.append(f"model.dropout: must lie in [0, 1), got {model.dropout}")
    one_of("model.activation", model.activation, "activation")
    for key in ("width", "depth", "time_embed_dim", "fourier_scale"):
        positive(f"model.{key}", getattr(model, key))
    if model.fourier_features < 0:
        errors.append(f"model.fourier_features: must be >= 0, got {model.fourier_features}")
    for key in ("steps", "batch_size", "lr", "eval_every", "val_batch", "nproc"):
        positive(f"train.{key}", getattr(train, key))
    if train.nproc > 0 and train.batch_size % train.nproc:
        errors.append(f"train.batch_size: {train.batch_size} must split evenly over train.nproc={train.nproc} processes")
    for key in ("warmup_steps", "grad_clip", "weight_decay", "checkpoint_every"):
        if not (getattr(train, key) >= 0 and math.isfinite(getattr(train, key))):
            errors.append(f"train.{key}: must be a finite number >= 0, got {getattr(train, key)}")
    if not 0 <= train.ema_decay < 1:
        errors.append(f"train.ema_decay: must lie in [0, 1), got {train.ema_decay}")
    one_of("train.device", train.device, "device")
    one_of("train.lr_schedule", train.lr_schedule, "lr_schedule")
    one_of("train.time_sampler", train.time_sampler, "time_sampler")
    one_of("train.precision", train.precision, "precision")
    one_of("sample.method", sample.method, "solver")
    for key in ("rtol", "steps", "n_samples"):
        positive(f"sample.{key}", getattr(sample, key))
    for key, value in (("sample.atol", sample.atol), ("sample.batch_size", sample.batch_size), ("sample.ladder_samples", sample.ladder_samples),
                       ("score.batch_size", score.batch_size)):
        if value is not None:
            positive(key, value)
    for s in sample.fixed_solvers:
        one_of("sample.fixed_solvers", s, "fixed")
    for n in sample.nfe_ladder:
        positive("sample.nfe_ladder", n)
    if sample.n_trajectories < 0:
        errors.append(f"sample.n_trajectories: must be >= 0, got {sample.n_trajectories}")
    positive("score.n_points", score.n_points)
    if score.density_grid < 0:
        errors.append(f"score.density_grid: must be >= 0, got {score.density_grid}")
    if not score.density_times or not all(0.0 <= t <= 1.0 for t in score.density_times):
        errors.append(f"score.density_times: must be a non-empty list of times in [0, 1], got {score.density_times}")
    if train.curve_points < 0:
        errors.append(f"train.curve_points: must be >= 0, got {train.curve_points}")
    positive("train.curve_tol", train.curve_tol)
    one_of("score.divergence", score.divergence, "divergence")
    one_of("score.probe", score.probe, "probe")
    one_of("score.fid_backend", score.fid_backend, "fid_backend")
    positive("score.dequant_draws", score.dequant_draws)
    positive("score.fid_draws", score.fid_draws)
    if score.fid_draws > 0 and sample.n_samples % score.fid_draws:
        errors.append(f"score.fid_draws: {score.fid_draws} must divide sample.n_samples={sample.n_samples} into equal draws")
    positive("score.probes", score.probes)
    if data.channels not in (1, 3):
        errors.append(f"data.channels: must be 1 or 3, got {data.channels}")
    positive("data.image_size", data.image_size)
    one_of("score.distance", score.distance, "distance")
    return errors


PER_DATASET_SECTIONS = ("model", "train", "sample", "score")


def _per_dataset_errors(p: Params, names: dict[str, list[str]]) -> list[str]:
    errors = []
    for dataset, overrides in p.per_dataset.items():
        key = f"per_dataset.{dataset}"
        if dataset not in names["dataset"]:
            errors.append(not_one_of(key, dataset, names["dataset"]))
            continue
        for ov in parse_overrides(overrides, key):
            if ov.key_or_group.split(".")[0] not in PER_DATASET_SECTIONS or ov.is_add() or ov.is_delete():
                errors.append(f"{key}: {ov.input_line!r} must set a key of {list(PER_DATASET_SECTIONS)} (key=value)")
        if not errors and p.methods:
            try:
                p.run(dataset, next(iter(p.methods)), 0)
            except ConfigError as e:
                errors.append(str(e))
    return errors


def validate_params(p: Params) -> list[str]:
    """Every out-of-range value and unknown name in ``p``, as ``dotted.key: reason``."""
    names = _names()
    errors = [not_one_of("pipeline.datasets", d, names["dataset"]) for d in p.pipeline.datasets if d not in names["dataset"]]
    errors += [not_one_of("pipeline.methods", m, sorted(p.methods)) for m in p.pipeline.methods if m not in p.methods]
    if p.pipeline.workers < 1:
        errors.append(f"pipeline.workers: must be at least 1, got {p.pipeline.workers}")
    errors += [f"pipeline.seeds: {s} must be >= 0" for s in p.pipeline.seeds if s < 0]
    for key in ("datasets", "methods", "seeds"):
        if not getattr(p.pipeline, key):
            errors.append(f"pipeline.{key}: must not be empty")
    for name, m in p.methods.items():
        errors += _method_errors(f"methods.{name}", m, names)
    errors += _section_errors(p.model, p.train, p.sample, p.score, p.data, names)
    return errors or _per_dataset_errors(p, names)


def validate_run(r: RunConfig) -> list[str]:
    names = _names()
    errors = [] if r.dataset in names["dataset"] else [not_one_of("dataset", r.dataset, names["dataset"])]
    return errors + _method_errors("method", r.method, names) + _section_errors(r.model, r.train, r.sample, r.score, r.data, names)


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Load, override and validate ``params.yaml``.

    ``overrides`` win over the file's ``per_dataset`` entries too: ``train.steps=10`` on the
    command line sets 10 steps for every dataset, whatever ``per_dataset.digits`` says.
    """
    cfg = structured(Params, read_yaml(path), str(path))
    apply_overrides(cfg, overrides, f"{path} overrides")
    params: Params = to_object(cfg, str(path))
    given = [ov.key_or_group for ov in parse_overrides(overrides, f"{path} overrides")]
    for dataset, entries in params.per_dataset.items():
        params.per_dataset[dataset] = [e for e, ov in zip(entries, parse_overrides(entries, f"{path}: per_dataset.{dataset}"))
                                       if not any(ov.key_or_group == g or ov.key_or_group.startswith(g + ".") for g in given)]
    errors = validate_params(params)
    if errors:
        raise ConfigError(f"{path}: " + "; ".join(errors))
    return params


def run_config(base: RunConfig, overrides: Sequence[str], source: str) -> RunConfig:
    """``base`` with Hydra-grammar overrides applied and validated."""
    with held():  # a SIGTERM inside OmegaConf would surface as an unrelated error (fmexp/signals.py)
        cfg = OmegaConf.structured(base)
        apply_overrides(cfg, overrides, source)
        run: RunConfig = to_object(cfg, source)
    errors = validate_run(run)
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    return run


def to_plain(obj: Any) -> Any:
    """A dataclass config as plain dicts and lists (for JSON, checkpoints and reports)."""
    with held():
        return OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)
