"""A study file: its schema, and ``load_study``, which checks it completely before anything runs.

A study file names a base config (``params.yaml``, a dataset and a method), fixed overrides, and a
search space in Hydra's sweep grammar (``choice``, ``interval``, ``range``, ``tag(log, ...)``), parsed
by hydra-core into Optuna distributions. A bad file raises ``ConfigError`` naming the file and the
field; ``fmexp.sweep.runner`` runs a checked study.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import optuna
from omegaconf import MISSING

from fmexp.config.load import load_params, run_config, run_for, to_plain
from fmexp.config.overrides import (
    not_one_of,
    read_yaml,
    structured,
    to_object,
)
from fmexp.config.sampling import few_step_error
from fmexp.config.schema import Params, RunConfig, reflow_name
from fmexp.config.validate import reflow_cell_error
from fmexp.errors import ConfigError
from fmexp.flow.units import CONDITIONAL_METRICS, SCORED, data_kind
from fmexp.registry import did_you_mean
from fmexp.sweep.loggers import check_loggers
from fmexp.sweep.samplers import PRUNERS, SAMPLERS, check_options, startup_trials
from fmexp.sweep.space import grid_points, override, points, probe_values, to_distribution
from fmexp.sweep.storage import STORAGE_ENV, STORAGE_SCHEMES, default_storage, redact
from fmexp.sweep.trial_queue import Heartbeat

__all__ = [
    "REFLOW_ROUND",
    "StudyConfig",
    "Study",
    "load_study",
    "study_warnings",
    "base_runs",
    "find_study",
    "study_file",
]

DIRECTIONS = ("minimize", "maximize")

REFLOW_ROUND = "reflow.round"
"""The search-space key of the reflow round a trial scores: 0, its method's own model; k, round k of
reflowing it (``params.reflow``'s couples and overrides; docs/reflow.md)."""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ObjectiveConfig:
    metric: str = MISSING
    direction: str = "minimize"


@dataclass
class SamplerConfig:
    name: str = "tpe"
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # passed to the sampler's constructor (sweep/samplers.py)


@dataclass
class PrunerConfig:
    name: str = "none"
    options: dict[str, Any] = field(default_factory=dict)  # passed to the pruner's constructor


@dataclass
class StudyConfig:
    """The study file. ``search_space`` maps RunConfig keys (``method.sigma_min``) to sweep expressions."""

    study: str = MISSING
    base: str = "params.yaml"
    dataset: str = "checkerboard"
    method: str = "fm_ot"  # a method defined in the base params; search_space may change its fields, or
    # search the method itself (``method: choice(fm_ot, fm_vp)``: each trial runs one of them, with its overrides)
    overrides: list[str] = field(default_factory=list)
    search_space: dict[str, str] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)  # searched keys chosen once for every method (report/tuning.py)
    objectives: list[ObjectiveConfig] = field(default_factory=lambda: [ObjectiveConfig(metric="nll")])
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    n_trials: int = 10
    seeds: list[int] = field(default_factory=lambda: [0])
    storage: str | None = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    loggers: dict[str, dict[str, Any]] = field(default_factory=dict)  # mlflow, wandb: their callbacks' arguments


@dataclass
class Study:
    """A checked study: its config, the base run of each method it runs, the Optuna distributions and
    where it lives."""

    path: Path
    config: StudyConfig
    base_runs: dict[str, RunConfig]
    space: dict[str, optuna.distributions.BaseDistribution]
    folder: Path
    storage: str
    rounds: dict[str, list[RunConfig]] = field(default_factory=dict)  # per method, its reflow rounds 1..k

    @property
    def base_run(self) -> RunConfig:
        """The run of the study's ``method`` before any searched value."""
        return self.base_runs[self.config.method]

    def runs(self, values: dict[str, Any], source: str) -> list[RunConfig]:
        """A trial's runs, in the order they train; the last is the one scored. Its method's base run
        (``values["method"]`` where the method is searched), then, where ``reflow.round`` is k > 0, reflow
        rounds 1..k of it (each trains on couples of the run before); the other sampled values apply to each."""
        method = values.get("method", self.config.method)
        chain = [self.base_runs[method], *self.rounds.get(method, [])[: int(values.get(REFLOW_ROUND, 0))]]
        extra = [override(k, v) for k, v in values.items() if k not in ("method", REFLOW_ROUND)]
        return [run_config(run, extra, source) for run in chain]

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        return [cast(Literal["minimize", "maximize"], o.direction) for o in self.config.objectives]


def load_study(
    path: str | Path,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    reports_dir: str | Path = "reports",
    name: str | None = None,
) -> Study:
    """Read and check a study file completely; raises ``ConfigError`` naming the file and field.
    ``name``, when given (a study listed in ``sweep.studies``), must equal the file's ``study``."""
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    cfg: StudyConfig = to_object(structured(StudyConfig, data, source), source)
    if n_trials is not None:
        cfg.n_trials = n_trials
    if not NAME.match(cfg.study or ""):
        raise ConfigError(
            f"{source}: study: {cfg.study!r} must be a plain name (letters, digits, '_', '-', '.'),"
            " so that reports/sweeps/<study>/ stays inside reports/sweeps/"
        )
    if name is not None and cfg.study != name:
        raise ConfigError(
            f"{source}: study: {cfg.study!r} must equal the file's name {name!r} (sweep.studies lists it by name,"
            f" and the pipeline's sweep stage owns reports/sweeps/{name}/)"
        )
    if cfg.n_trials < 1:
        raise ConfigError(f"{source}: n_trials: must be at least 1, got {cfg.n_trials}")
    if not cfg.seeds:
        raise ConfigError(f"{source}: seeds: must list at least one seed")
    if not cfg.objectives:
        raise ConfigError(f"{source}: objectives: must list at least one objective")
    for i, o in enumerate(cfg.objectives):
        if o.direction not in DIRECTIONS:
            raise ConfigError(f"{source}: {not_one_of(f'objectives[{i}].direction', o.direction, DIRECTIONS)}")
    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"{source}: {not_one_of('sampler.name', cfg.sampler.name, list(SAMPLERS))}")
    if cfg.pruner.name not in PRUNERS:
        raise ConfigError(f"{source}: {not_one_of('pruner.name', cfg.pruner.name, list(PRUNERS))}")
    check_options("sampler", cfg.sampler.name, cfg.sampler.options, source)
    check_options("pruner", cfg.pruner.name, cfg.pruner.options, source)
    check_loggers(cfg.loggers, source)
    multi = len(cfg.objectives) > 1
    if multi and cfg.pruner.name != "none":
        raise ConfigError(f"{source}: pruner.name: Optuna cannot prune a multi-objective study; use 'none'")
    if multi and cfg.sampler.name == "cmaes":
        raise ConfigError(f"{source}: sampler.name: cmaes is single-objective; use nsga2 or tpe")

    base_path = Path(cfg.base)
    try:
        params = load_params(base_path)
    except ConfigError as e:  # the base params file's own error, under the study file that names it
        raise ConfigError(f"{source}: base: {e}") from None
    space = {key: to_distribution(key, expr, source) for key, expr in cfg.search_space.items()}
    rounds = _searched_rounds(space.get(REFLOW_ROUND), source)
    kind = data_kind(cfg.dataset, params.pairs)
    kind = "reflow" if kind == "flat" and min(rounds) >= 1 else kind  # every trial a round: its metrics too
    for i, o in enumerate(cfg.objectives):
        allowed = list(SCORED[kind])
        if o.metric not in allowed:
            raise ConfigError(
                f"{source}: {not_one_of(f'objectives[{i}].metric', o.metric, allowed)}"
                f" (what the score stage writes for {cfg.dataset}"
                + (", every trial a reflow round)" if kind == "reflow" else ")")
            )
    methods = [cfg.method]
    if "method" in space:
        if not isinstance(space["method"], optuna.distributions.CategoricalDistribution):
            raise ConfigError(f"{source}: search_space.method: the method is searched by choice(...) of its names")
        methods = [str(m) for m in space["method"].choices]
        if cfg.method not in methods:
            raise ConfigError(f"{source}: method: {cfg.method!r} must be one of search_space.method's {methods}")
    if cfg.shared and ("method" not in space or not set(cfg.shared) <= set(space) - {"method"}):
        raise ConfigError(
            f"{source}: shared: {cfg.shared} must name searched keys other than method, in a study that searches"
            f" the method; search_space has {sorted(space)}"
        )
    base_runs = {}
    for m in methods:
        where = "method" if m == cfg.method else "search_space.method"
        if m not in params.methods:
            raise ConfigError(f"{source}: {not_one_of(where, m, sorted(params.methods))} (the methods of {base_path})")
        try:
            run = run_for(params, cfg.dataset, m, cfg.seeds[0])
        except ConfigError as e:  # a dataset or per_dataset entry of the base that this study's dataset cannot take
            raise ConfigError(f"{source}: {e}") from None
        base_runs[m] = run_config(run, cfg.overrides, f"{source}: overrides")
    reflow_runs = {m: _reflow_runs(params, cfg, m, max(rounds), source) for m in methods} if max(rounds) else {}
    every_run = [*base_runs.values(), *(r for runs in reflow_runs.values() for r in runs)]
    searched = {k: d for k, d in space.items() if k not in ("method", REFLOW_ROUND)}
    for key, dist in searched.items():  # every key must exist, every choice and bound must be valid
        for value in probe_values(dist):
            for run in every_run:
                run_config(run, [override(key, value)], f"{source}: search_space.{key}")
    if any(o.metric == "few_step" for o in cfg.objectives):  # its rung must be in every trial's ladder
        probes = [[], *([override(k, v)] for k, d in searched.items() for v in probe_values(d))]
        for run in every_run:
            for extra in probes:
                trial = run_config(run, extra, f"{source}: search_space")
                if reason := few_step_error(trial.score, trial.sample):
                    raise ConfigError(f"{source}: objectives: few_step needs its sampler in the ladder: {reason}")
    conditional = [o.metric for o in cfg.objectives if o.metric in CONDITIONAL_METRICS]
    for run in base_runs.values() if conditional else ():  # a class-conditional run's metrics, at a sampled scale
        if run.train.label_dropout is None or (
            any(m.startswith("guided_") for m in conditional) and not run.sample.guidance
        ):
            raise ConfigError(
                f"{source}: objectives: {conditional} are a class-conditional run's metrics: its overrides (or its"
                " method's) must set train.label_dropout, and sample.guidance for guided_fid and guided_accuracy"
            )
    if cfg.sampler.name == "grid":
        bad = [k for k, d in space.items() if isinstance(d, optuna.distributions.FloatDistribution) and d.step is None]
        if bad:
            raise ConfigError(
                f"{source}: sampler.name: grid needs choice() or range() for every key; {bad} are intervals"
            )
        size = len(grid_points(space, 0))
        if cfg.n_trials > size:
            raise ConfigError(
                f"{source}: n_trials: {cfg.n_trials} is more than the grid's {size} points (each runs once)"
            )
    hb = cfg.heartbeat
    if not 0 < hb.interval < hb.grace_period:
        raise ConfigError(
            f"{source}: heartbeat: needs 0 < interval < grace_period, got interval={hb.interval},"
            f" grace_period={hb.grace_period}"
        )

    folder = Path(reports_dir) / "sweeps" / cfg.study
    url = storage or os.environ.get(STORAGE_ENV) or cfg.storage
    if url is None:
        url = default_storage(folder)
    elif url.split("://")[0].split("+")[0] not in STORAGE_SCHEMES:
        raise ConfigError(
            f"{source}: storage: {redact(url)!r} must be null, journal:///FILE, sqlite:///FILE or postgresql://..."
        )
    return Study(
        path=path, config=cfg, base_runs=base_runs, space=space, folder=folder, storage=url, rounds=reflow_runs
    )


def _searched_rounds(dist: optuna.distributions.BaseDistribution | None, source: str) -> list[int]:
    """The reflow rounds that ``search_space.reflow.round`` holds (``[0]`` where it is not searched): whole
    numbers from 0, by ``choice`` or ``range``."""
    if dist is None:
        return [0]
    values = probe_values(dist) if isinstance(dist, optuna.distributions.FloatDistribution) else points(dist)
    if isinstance(dist, optuna.distributions.FloatDistribution) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ConfigError(
            f"{source}: search_space.{REFLOW_ROUND}: the reflow round is a whole number from 0 (0: the method's own"
            f" model), by choice(...) or range(...); got {values}"
        )
    return [int(v) for v in values]


def _reflow_runs(params: Params, cfg: StudyConfig, method: str, k: int, source: str) -> list[RunConfig]:
    """Rounds 1..k of reflowing ``method`` on the study's dataset, each with ``params.reflow``'s couples and
    overrides, then the study's ``overrides``."""
    where = f"{source}: search_space.{REFLOW_ROUND}"
    if (reason := reflow_cell_error(params, f"{cfg.dataset}/{method}")) is not None:
        raise ConfigError(f"{where}: {reason}")
    overrides = [*params.reflow.overrides, *cfg.overrides]  # the study's apply to every run it trains
    cell = dataclasses.replace(params.reflow, cells=[f"{cfg.dataset}/{method}"], rounds=k, overrides=overrides)
    reflowed = dataclasses.replace(params, reflow=cell)
    try:
        return [run_for(reflowed, cfg.dataset, reflow_name(method, j), cfg.seeds[0]) for j in range(1, k + 1)]
    except ConfigError as e:  # a round's own rules: the Euler rungs that score it
        raise ConfigError(f"{where}: {e}") from None


def base_runs(study: Study) -> dict[str, Any]:
    """The study's base run as its records hold it: ``base_run``, and where the method is searched,
    ``base_runs`` by method too."""
    out = {"base_run": to_plain(study.base_run)}
    if len(study.base_runs) > 1:
        out["base_runs"] = {m: to_plain(r) for m, r in study.base_runs.items()}
    if study.rounds:
        out["reflow_runs"] = {m: [to_plain(r) for r in runs] for m, runs in study.rounds.items()}
    return out


def study_warnings(study: Study) -> list[str]:
    """What the study does that its file does not say: a sampler that draws every trial at random."""
    cfg = study.config
    startup = startup_trials(cfg.sampler.name, cfg.sampler.options)
    if startup is not None and cfg.n_trials <= startup[1]:
        option, value = startup
        return [
            f"{study.path}: n_trials={cfg.n_trials} does not exceed {cfg.sampler.name}'s {option}={value}, the"
            f" trials it draws at random first: every trial of this study is random search. Set"
            f" sampler.options.{option} below n_trials, or say sampler.name: random"
        ]
    return []


def study_file(name: str, studies_dir: str | Path = "studies") -> Path:
    """The file of a study listed by name under ``sweep.studies``: ``studies/<name>.yaml``."""
    return Path(studies_dir) / f"{name}.yaml"


def find_study(study: str, studies_dir: str | Path = "studies") -> tuple[Path, str | None]:
    """The file of ``study``: itself where it names a file (``studies/mine.yaml``), else the study of
    that name under ``studies_dir``, whose ``study`` field must then equal the name (returned)."""
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path, None
    if not NAME.match(study):
        raise ConfigError(f"{study}: not a study file, nor a study's name")
    path = study_file(study, studies_dir)
    if not path.exists():
        known = sorted(p.stem for p in Path(studies_dir).glob("*.yaml"))
        raise ConfigError(
            f"{path}: no such study; the studies under {studies_dir}/ are {known}{did_you_mean(study, known)}"
        )
    return path, study
