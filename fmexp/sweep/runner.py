"""Running a study: open it with its slots, run its workers, write its outputs (``fmexp sweep STUDY``).

The study file is checked completely first (``fmexp.sweep.study``): a bad file exits with status 2, naming
the file and the field, and leaves no folder and no storage behind. Each trial runs every listed
seed through the pipeline's own stage functions; its objective is the mean over seeds.

Trials run from a queue of exactly ``n_trials`` slots (``fmexp.sweep.trial_queue``): any number of workers,
on one machine (``--workers N``, a journal file) or many (one PostgreSQL), finish exactly ``n_trials``;
a killed worker's trial is run again once, with its params; no params are drawn twice.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from fmexp.config.load import to_plain
from fmexp.errors import ConfigError
from fmexp.sweep.loggers import Callback, make_loggers
from fmexp.sweep.objective import TRIAL_FAILURES, make_objective
from fmexp.sweep.outputs import summary, trial_line, write_outputs
from fmexp.sweep.samplers import make_pruner, make_sampler
from fmexp.sweep.space import grid_points
from fmexp.sweep.storage import default_storage, make_storage, redact
from fmexp.sweep.study import Study, base_runs, load_study
from fmexp.sweep.trial_queue import TrialSeededSampler, enqueue_slots, run_worker

__all__ = ["open_study", "run_study"]


def _sampler(study: Study) -> optuna.samplers.BaseSampler:
    """The study's sampler, reseeded per trial (``TrialSeededSampler``)."""
    cfg = study.config.sampler
    return TrialSeededSampler(make_sampler(cfg.name, cfg.options), cfg.seed)


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    cfg = study.config.pruner
    return make_pruner(cfg.name, cfg.options, study.base_run.train.steps)


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
        from fmexp.runtime.processes import run_in_processes

        job = (study.path, study.storage, str(study.folder.parent.parent))
        run_in_processes(_worker_process, [(*job, quiet)] * workers, workers)
    else:
        run_worker(
            ostudy, storage, make_objective(study), TRIAL_FAILURES, study.config.heartbeat, _callbacks(study, quiet)
        )
    write_outputs(study, ostudy)
    if not quiet:
        print(summary(study, ostudy))
    return ostudy


def open_study(
    study: Study, *, archive_changed: bool = False, quiet: bool = False
) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Create the study and enqueue its slots, or load it and top its slots up to ``n_trials``.

    The worker that creates a study enqueues the slots before it records the definition; a worker
    that finds the study waits for that record, so that only one worker ever fills the queue.
    """
    ostudy, storage, created = _create_or_load(study)
    definition = _definition(study)
    stored = None if created else _wait_for_definition(ostudy, study.config.heartbeat.grace_period)
    if stored is not None and stored != definition:
        changed = sorted(k for k in set(stored) | set(definition) if stored.get(k) != definition.get(k))
        where = (
            f"the stored study {study.config.study!r} ({redact(study.storage)}) was made from a different definition"
            f" ({', '.join(changed)} changed)"
        )
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


def _worker_process(path: Path, storage: str, reports_dir: str, quiet: bool) -> int:
    """One of ``--workers N``: load the opened study and run slots (a top-level function, for the worker processes)."""
    study = load_study(path, storage=storage, reports_dir=reports_dir)
    ostudy, storage_, _ = _create_or_load(study)
    callbacks = _callbacks(study, quiet)
    return run_worker(ostudy, storage_, make_objective(study), TRIAL_FAILURES, study.config.heartbeat, callbacks)


def _callbacks(study: Study, quiet: bool) -> list[Callback]:
    """After each finished trial: its line on stdout (unless ``quiet``), then the study's trackers."""

    def say(ostudy: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(trial_line(study, ostudy, trial), flush=True)

    metrics = [o.metric for o in study.config.objectives]
    return [*([] if quiet else [say]), *make_loggers(study.config.loggers, metrics, str(study.path))]


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
        name, sampler, pruner = study.config.study, _sampler(study), _pruner(study)
        with contextlib.suppress(KeyError):  # load first: a failed create still writes to a journal
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), storage, False
        try:
            created = optuna.create_study(
                directions=study.directions, study_name=name, storage=storage, sampler=sampler, pruner=pruner
            )
            return created, storage, True
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), storage, False

    for i in range(attempts - 1):
        try:
            return attempt()
        except (IntegrityError, OperationalError, ProgrammingError):
            time.sleep(0.5 * (i + 1))
    return attempt()


def _definition(study: Study) -> dict[str, Any]:
    """What makes trials comparable: everything but the trial budget, the storage, the heartbeat and the trackers."""
    cfg = to_plain(study.config)
    return {k: v for k, v in cfg.items() if k not in ("n_trials", "storage", "heartbeat", "loggers")} | base_runs(study)
