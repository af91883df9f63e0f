"""``python -m fmexp.sweep STUDY.yaml``: run a declarative Optuna study of fmexp runs.

The study file is checked completely first (``fmexp.study``): a bad file exits with status 2, naming
the file and the field, and leaves no folder and no storage behind. Each trial runs every listed
seed through the pipeline's own stage functions; its objective is the mean over seeds.

Trials run from a queue of exactly ``n_trials`` slots (``fmexp.trial_queue``): any number of workers,
on one machine (``--workers N``, a journal file) or many (one PostgreSQL), finish exactly ``n_trials``;
a killed worker's trial is run again once, with its params; no params are drawn twice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import optuna
import torch
import yaml

from fmexp import artifacts
from fmexp.config import run_config
from fmexp.ode import SolverError
from fmexp.overrides import ConfigError
from fmexp.signals import exit_on_sigterm
from fmexp.storage import STORAGE_ENV, default_storage, make_storage, redact
from fmexp.study import Study, grid_points, load_study, override, study_file
from fmexp.training import TrainingDiverged
from fmexp.trial_queue import TrialSeededSampler, counted, enqueue_slots, run_worker

__all__ = ["TRIAL_FAILURES", "open_study", "run_study", "run_studies", "write_outputs", "summary", "main"]

TRIAL_FAILURES = (ConfigError, TrainingDiverged, SolverError, torch.OutOfMemoryError)
"""What fails one trial (recorded in its ``error`` user attr) and lets the study go on."""


def _sampler(study: Study) -> optuna.samplers.BaseSampler:
    """The study's sampler, reseeded per trial (``TrialSeededSampler``). A grid's points are enqueued
    as fixed params, so its trials never ask a sampler."""
    make = {
        "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
        "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda seed: optuna.samplers.RandomSampler(seed=seed),
        "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
        "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    }[study.config.sampler.name]
    return TrialSeededSampler(make, study.config.sampler.seed)


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    return {
        "none": optuna.pruners.NopPruner,
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=study.base_run.train.steps),
    }[study.config.pruner.name]()


def _suggest(trial: optuna.Trial, key: str, d: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, d.choices)
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)  # type: ignore[attr-defined]


def _objective(study: Study):
    from dataclasses import replace

    from fmexp.layout import RunFiles
    from fmexp.plan import load_data
    from fmexp.stages.sample import sample_run
    from fmexp.stages.score import score_run
    from fmexp.stages.train import train_run

    cache: dict[tuple, Any] = {}
    metrics = [o.metric for o in study.config.objectives]
    prune = study.config.pruner.name != "none"
    single = len(metrics) == 1  # Optuna takes intermediate values for single-objective studies only

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        values = {key: _suggest(trial, key, d) for key, d in study.space.items()}
        try:
            return _evaluate(trial, values)
        except TRIAL_FAILURES as e:  # a bad combination (sm with the ot path), a diverged run, a solver failure, OOM
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise

    def _evaluate(trial: optuna.Trial, values: dict[str, Any]) -> float | tuple[float, ...]:
        run = run_config(study.base_run, [override(k, v) for k, v in values.items()], f"trial {trial.number}")
        key = (run.dataset, repr(run.data))
        if key not in cache:
            cache[key] = load_data(run.data, run.dataset)
        per_seed: dict[str, list[float]] = {m: [] for m in metrics}
        for i, seed in enumerate(study.config.seeds):
            offset = i * run.train.steps

            def on_eval(row: dict[str, float]) -> None:
                if single and metrics[0] in row:  # reported with or without a pruner: optuna-dashboard draws the curves
                    trial.report(row[metrics[0]], offset + int(row["step"]))
                    if prune and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at step {row['step']} of seed {seed}")

            files = RunFiles(study.folder / "trials" / f"{trial.number:04d}", seed)
            seeded = replace(run, seed=seed)
            train_run(seeded, cache[key], files, on_eval=on_eval, progress=False)
            sample_run(seeded, cache[key], files)
            result = score_run(seeded, cache[key], files, density=False)
            for m in metrics:
                per_seed[m].append(float(result[m]))
                trial.set_user_attr(f"seed{seed}_{m}", float(result[m]))
        means = tuple(sum(v) / len(v) for v in per_seed.values())
        return means[0] if len(means) == 1 else means

    return objective


def run_study(study: Study, *, quiet: bool = False, archive_changed: bool = False, workers: int = 1) -> optuna.Study:
    """Open the study with its ``n_trials`` slots, run ``workers`` worker processes (or this one)
    until every slot has finished, then write the outputs. A rerun resumes: it runs the slots still
    waiting, and again any a killed worker lost.

    A stored study made from a different definition is refused; with ``archive_changed`` (the
    pipeline's ``sweep`` stage) its storage file and trial folders are moved, never deleted, to
    ``<folder>/archive/<UTC time>/`` and the study starts afresh.
    """
    study.folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy, storage = open_study(study, archive_changed=archive_changed, quiet=quiet)
    if workers > 1:
        from fmexp.processes import run_in_processes

        job = (study.path, study.storage, str(study.folder.parent.parent))
        run_in_processes(_worker_process, [job] * workers, workers)
    else:
        run_worker(ostudy, storage, _objective(study), TRIAL_FAILURES, study.config.heartbeat)
    write_outputs(study, ostudy)
    if not quiet:
        print(summary(study, ostudy))
    return ostudy


def open_study(study: Study, *, archive_changed: bool = False, quiet: bool = False) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create the study and enqueue its slots, or load it and top its slots up to ``n_trials``.

    The worker that creates a study enqueues the slots before it records the definition; a worker
    that finds the study waits for that record, so that only one worker ever fills the queue.
    """
    ostudy, storage, created = _create_or_load(study)
    definition = _definition(study)
    stored = None if created else _wait_for_definition(ostudy, study.config.heartbeat.grace_period)
    if stored is not None and stored != definition:
        changed = sorted(k for k in set(stored) | set(definition) if stored.get(k) != definition.get(k))
        where = (f"the stored study {study.config.study!r} ({redact(study.storage)}) was made from a different definition"
                 f" ({', '.join(changed)} changed)")
        if not (archive_changed and study.storage == default_storage(study.folder)):
            raise ConfigError(f"{study.path}: {where}; rename the study, or move its storage away to start afresh")
        archive = _archive(study.folder)
        if not quiet:
            print(f"{where}: moved its storage and trials to {archive}/ and started afresh")
        ostudy, storage, created = _create_or_load(study)
        stored = None
    grid = grid_points(study.space, study.config.sampler.seed) if study.config.sampler.name == "grid" else None
    enqueue_slots(ostudy, study.config.n_trials, grid)
    if stored is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ostudy.set_metric_names([o.metric for o in study.config.objectives])
        ostudy.set_user_attr("definition", definition)
    return ostudy, storage


def _wait_for_definition(ostudy: optuna.Study, timeout: float) -> dict[str, Any] | None:
    """The stored definition; while the creating worker is still filling the queue, wait for it (a
    creator killed before it wrote the definition leaves none: this worker then takes over)."""
    deadline = time.monotonic() + timeout
    while (stored := ostudy.user_attrs.get("definition")) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return stored


def _worker_process(path: Path, storage: str, reports_dir: str) -> int:
    """One of ``--workers N``: load the opened study and run slots (a top-level function, for the worker processes)."""
    study = load_study(path, storage=storage, reports_dir=reports_dir)
    ostudy, storage_, _ = _create_or_load(study)
    return run_worker(ostudy, storage_, _objective(study), TRIAL_FAILURES, study.config.heartbeat)


def _archive(folder: Path) -> Path:
    """Move a study's storage files and trial folders to ``folder/archive/<UTC time>/``; return that folder."""
    target = folder / "archive" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target.mkdir(parents=True)
    for name in ("study.db", "study.journal", "study.journal.lock", "trials"):
        if (folder / name).exists():
            (folder / name).rename(target / name)
    return target


def _create_or_load(study: Study, attempts: int = 5) -> tuple[optuna.Study, optuna.storages.BaseStorage, bool]:
    """Create the study (``True``), or load it when it exists (``False``), with its storage. Workers that start together
    on a new database can race to create Optuna's tables (a unique-key violation in PostgreSQL, "table
    already exists" in SQLite); the loser waits and tries again, and then finds the tables and the
    study in place."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    def attempt() -> tuple[optuna.Study, optuna.storages.BaseStorage, bool]:
        storage = make_storage(study.storage)
        kw = dict(study_name=study.config.study, storage=storage, sampler=_sampler(study), pruner=_pruner(study))
        with contextlib.suppress(KeyError):  # load first: a failed create still writes to a journal
            return optuna.load_study(**kw), storage, False
        try:
            return optuna.create_study(directions=study.directions, **kw), storage, True
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(**kw), storage, False

    for i in range(attempts - 1):
        try:
            return attempt()
        except (IntegrityError, OperationalError, ProgrammingError):
            time.sleep(0.5 * (i + 1))
    return attempt()


def _definition(study: Study) -> dict[str, Any]:
    """What makes trials comparable: everything but the trial budget, the storage and the heartbeat."""
    from fmexp.config import to_plain

    cfg = to_plain(study.config)
    return {k: v for k, v in cfg.items() if k not in ("n_trials", "storage", "heartbeat")} | {"base_run": to_plain(study.base_run)}


def write_outputs(study: Study, ostudy: optuna.Study) -> None:
    """``trials.csv`` (params, objectives, state, duration, per-seed values, and ``superseded``: a
    trial lost with its worker and run again), ``best.yaml`` and ``study.yaml``."""
    from fmexp.trial_queue import HEARTBEAT_ATTR, superseded

    names = [o.metric for o in study.config.objectives]
    trials = ostudy.get_trials(deepcopy=False)
    df = ostudy.trials_dataframe(attrs=("number", "state", "params", "values", "duration", "user_attrs"), multi_index=False)
    df = df.drop(columns=[f"user_attrs_{HEARTBEAT_ATTR}"], errors="ignore")
    df["superseded"] = df["number"].isin(superseded(trials))
    # Optuna names the objective columns value, values_<i> or, once set_metric_names ran, values_<name>
    renames = {"value": names[0]} if len(names) == 1 else {}
    df = df.rename(columns=renames | {f"values_{i}": n for i, n in enumerate(names)} | {f"values_{n}": n for n in names})
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
    with artifacts.atomic_path(study.folder / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    best = [{"number": t.number, "params": t.params, "values": dict(zip(names, t.values))} for t in _best(ostudy)]
    doc = {"study": study.config.study, "objectives": [{"metric": o.metric, "direction": o.direction} for o in study.config.objectives],
           "pareto_front" if len(names) > 1 else "best": best if len(names) > 1 else (best[0] if best else None),
           "study_file": str(study.path), "n_trials": len(counted(trials))}
    artifacts.write_text(study.folder / "best.yaml", yaml.safe_dump(doc, sort_keys=False))
    artifacts.write_text(study.folder / "study.yaml", yaml.safe_dump(_study_record(study), sort_keys=False))


def _study_record(study: Study) -> dict[str, Any]:
    from fmexp.config import to_plain

    config = to_plain(study.config) | {"storage": redact(study.storage)}
    return {"study_file": str(study.path), "config": config, "base_run": to_plain(study.base_run)}


def _best(ostudy: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    try:
        return list(ostudy.best_trials) if len(ostudy.directions) > 1 else [ostudy.best_trial]
    except ValueError:  # no completed trial
        return []


def summary(study: Study, ostudy: optuna.Study) -> str:
    trials = ostudy.get_trials(deepcopy=False)
    states = [t.state.name for t in counted(trials)]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    lost = len(trials) - len(states)
    rerun = f"; {lost} lost with a worker and run again" if lost else ""
    lines = [f"study {study.config.study}: {len(states)} trials ({counts}{rerun}); storage {redact(study.storage)}"]
    names = [o.metric for o in study.config.objectives]
    for t in _best(ostudy):
        vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values))
        lines.append(f"  {'pareto' if len(names) > 1 else 'best'} #{t.number}: {vals}  {t.params}")
    lines.append(f"  outputs: {study.folder}/trials.csv, {study.folder}/best.yaml")
    return "\n".join(lines)


def run_studies(names: Sequence[str], *, reports_dir: str | Path = "reports") -> None:
    """Check every study listed by name (``studies/<name>.yaml``) first, then run each, archiving a
    stored study whose definition changed (``python -m fmexp sweep``: all of ``sweep.studies``)."""
    studies = [load_study(study_file(n), reports_dir=reports_dir, name=n) for n in names]
    for s in studies:
        run_study(s, archive_changed=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmexp.sweep", description="Run a declarative Optuna study of fmexp runs.")
    parser.add_argument("study", type=Path, help="a study file, e.g. studies/ot_vs_vp.yaml")
    parser.add_argument("--storage", help=f"an Optuna storage shared by workers (or ${STORAGE_ENV}): postgresql://..., sqlite:///FILE or"
                                          " journal:///FILE; default: a journal file under reports/sweeps/<study>/")
    parser.add_argument("--n-trials", type=int, help="the study's total number of trials (overrides the file)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes on this machine, each with cores // N torch threads (default 1)")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument("--archive-changed", action="store_true",
                        help="when the stored study (under reports/sweeps/<study>/) was made from a different definition,"
                             " move it and its trials to reports/sweeps/<study>/archive/<time>/ and start afresh; without it,"
                             " such a study is refused")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers: must be at least 1, got {args.workers}")
    signal.signal(signal.SIGTERM, exit_on_sigterm)  # a queue's or DVC's stop: the running trial goes back in the queue
    start = time.perf_counter()
    try:
        study = load_study(args.study, storage=args.storage, n_trials=args.n_trials, reports_dir=args.reports_dir)
        ostudy = run_study(study, archive_changed=args.archive_changed, workers=args.workers)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in ostudy.trials):
        print(f"error: every trial of study {study.config.study!r} failed (reasons in {study.folder}/trials.csv,"
              " column user_attrs_error)", file=sys.stderr)
        return 1
    print(f"  wall time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
