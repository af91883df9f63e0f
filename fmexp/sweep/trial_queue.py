"""A study's trials as a queue of slots: exactly ``n_trials``, nothing lost to a kill, nothing repeated.

The worker that creates a study enqueues its ``n_trials`` slots as WAITING trials: empty ones, which
the sampler fills when a worker starts them, or for a grid its points, each once. Workers take slots
through the storage's compare-and-set from WAITING to RUNNING, so two workers never take the same
one, and no worker creates a trial of its own: the study never grows past ``n_trials``.

A running trial beats a heartbeat (a user attr, written every ``interval`` seconds by a thread). A
RUNNING trial whose latest beat, or start, is older than ``grace_period`` was lost with its worker:
any worker marks it FAIL and enqueues it once more with its params (Optuna's
``RetryHeartbeatStaleTrialCallback``, ``max_retry=1``); the failed copy is *superseded* and does not
count. A worker leaves when no slot is waiting or running, so a worker that exits 0 leaves a finished
study. This works the same on every storage: Optuna's own RDB heartbeat skips a RUNNING trial that
never beat (one killed before its first beat, or from before heartbeats), and JournalStorage has none.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

__all__ = ["Heartbeat", "TrialSeededSampler", "superseded", "counted", "enqueue_slots", "run_worker"]

HEARTBEAT_ATTR = "heartbeat"


@dataclass
class Heartbeat:
    """Seconds between beats of a running trial, and the silence after which it counts as lost."""

    interval: float = 10.0
    grace_period: float = 60.0


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """``make(seed)`` rebuilt for each trial with a seed drawn from (study seed, trial number).

    Trial numbers are unique across workers, so no two workers draw the same random parameters;
    with one worker the study is reproducible, since trial k always gets the same seed and sees the
    same history. The wrapped samplers keep their state in the storage, not in the instance.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def seed_for(self, number: int) -> int:
        return int(np.random.SeedSequence([self._seed, number]).generate_state(1)[0])

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(self.seed_for(trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)


def superseded(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of the lost trials that were enqueued again (their retries name them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The study's slots: every trial but the superseded ones."""
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone]


def enqueue_slots(study: optuna.Study, n_trials: int, grid: Sequence[dict[str, Any]] | None = None) -> int:
    """Enqueue WAITING slots until the study holds ``n_trials`` of them; return how many were added.
    A grid's slots are its points not yet in the study, in the given order."""
    have = counted(study.get_trials(deepcopy=False))
    missing = n_trials - len(have)
    if missing <= 0:
        return 0
    if grid is None:
        points: list[dict[str, Any]] = [{}] * missing
    else:
        taken = [t.params or t.system_attrs.get("fixed_params", {}) for t in have]
        points = [p for p in grid if p not in taken][:missing]
    for p in points:
        study.enqueue_trial(dict(p))
    return len(points)


def _last_beat(trial: FrozenTrial) -> float:
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(start, float(trial.user_attrs.get(HEARTBEAT_ATTR, 0.0)))


def fail_stale(study: optuna.Study, storage: optuna.storages.BaseStorage, heartbeat: Heartbeat) -> list[int]:
    """Mark FAIL every RUNNING trial silent for longer than the grace period and enqueue its retry;
    return their numbers. Two workers may both see one stale trial: the storage lets one fail it."""
    retry = _retry_callback()
    study_id = storage.get_study_id_from_name(study.study_name)
    now, lost = time.time(), []
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if now - _last_beat(t) <= heartbeat.grace_period:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # it finished, or another worker failed it first
            continue
        retry(study, storage.get_trial(trial_id))
        lost.append(t.number)
    return lost


def _retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)


def _pop(storage: optuna.storages.BaseStorage, study_id: int) -> int | None:
    """Take a WAITING trial: the storage's WAITING -> RUNNING change succeeds for one worker only."""
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return trial_id
        except UpdateFinishedTrialError:
            continue
    return None


@contextlib.contextmanager
def _beating(storage: optuna.storages.BaseStorage, trial_id: int, interval: float) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:  # another worker judged it lost; the objective's tell says so
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _tell(
    study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None
) -> FrozenTrial | None:
    """``study.tell``, or ``None`` where another worker judged the trial lost while it ran (its beats
    reached the storage later than the grace period): that worker has failed it and enqueued its
    retry, which runs it again, so this result is not the slot's."""
    try:
        return study.tell(trial, values, state=state, skip_if_finished=True)
    except (
        UpdateFinishedTrialError
    ):  # skip_if_finished reads the state first; the other worker can fail it after that read
        return None


def run_worker(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    objective: Callable[[optuna.Trial], Any],
    catch: tuple[type[BaseException], ...],
    heartbeat: Heartbeat,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> int:
    """Run slots until none is waiting or running; return how many this worker ran. Each of
    ``callbacks`` is called as ``study.optimize`` would, after each trial this worker finished (and
    that counts: not one lost while it ran).

    An exception in ``catch`` fails its trial and the worker goes on; ``TrialPruned`` prunes it; a
    trial that another worker judged lost while it ran is left to its retry, whether the objective
    or the final ``tell`` finds out; an interrupt (Ctrl-C, SIGTERM) fails it, enqueues its retry and
    propagates; any other exception fails the trial and propagates (a bug should stop the sweep, not
    every trial).
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    ran = 0
    while True:
        fail_stale(study, storage, heartbeat)
        trial_id = _pop(storage, study_id)
        if trial_id is None:
            if not storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                return ran
            time.sleep(heartbeat.interval)  # another worker's trial is running: it finishes, or it goes stale
            continue
        ran += 1
        trial = optuna.Trial(study, trial_id)
        values, state = None, None
        with _beating(storage, trial_id, heartbeat.interval):
            try:
                values = objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except UpdateFinishedTrialError:  # judged lost while it ran, at one of its own writes (see _tell)
                continue
            except catch:
                state = TrialState.FAIL
            except (KeyboardInterrupt, SystemExit):  # stopped, not wrong: the slot goes back in the queue
                frozen = _tell(study, trial, state=TrialState.FAIL)
                if frozen is not None and frozen.number not in superseded(study.get_trials(deepcopy=False)):
                    _retry_callback()(study, frozen)
                raise
            except BaseException:
                _tell(study, trial, state=TrialState.FAIL)
                raise
        frozen = _tell(study, trial, values, state=state)
        if frozen is not None:
            for callback in callbacks:
                callback(study, frozen)
