"""Sweeps under faults and parallel workers, with real processes and real signals: exactly n_trials
finished, nothing lost to a SIGKILL, no params drawn twice, every grid point once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from fmexp.cli import main as fmexp_main
from fmexp.sweep.storage import make_storage
from fmexp.sweep.trial_queue import (
    Heartbeat,
    counted,
    enqueue_slots,
    fail_stale,
    run_worker,
    superseded,
)
from tests.helpers import (
    FAST_HEARTBEAT,
    GRID,
    RANDOM,
    SHARING_HEARTBEAT,
    check_exact,
    journal,
    study_trials,
    sweep,
    tiny_study,
    workers_share,
    write_yaml,
)


def main(argv: list[str]) -> int:
    """``python -m fmexp.sweep ARGV``, in this process."""
    return fmexp_main(["sweep", *argv], prog="python -m fmexp.sweep")


pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.mark.parametrize(
    "sampler, sig",
    [("random", signal.SIGKILL), ("tpe", signal.SIGKILL), ("random", signal.SIGTERM)],
    ids=["random-SIGKILL", "tpe-SIGKILL", "random-SIGTERM"],
)
def test_a_killed_worker_loses_and_repeats_nothing(workdir: Path, sampler: str, sig: signal.Signals) -> None:
    """A worker killed by SIGKILL while trial 1 runs leaves it RUNNING; the rerun waits out the grace
    period, fails it, runs it again with its params, and ends with exactly n_trials finished. SIGTERM
    hands the trial back at once: FAIL, and its retry waiting."""
    study = write_yaml(
        workdir / "k.yaml",
        tiny_study(
            "k",
            sampler={"name": sampler, "seed": 0},
            n_trials=4,
            heartbeat=FAST_HEARTBEAT,
            objectives=[{"metric": "nll", "direction": "minimize"}],
            search_space={"method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
            overrides=["train.steps=300", "train.eval_every=100"],
        ),
    )
    url = journal(workdir / "reports", "k")
    worker = sweep([str(study)], workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            trials = study_trials("k", url)
        except KeyError:  # the worker has not created the study yet
            trials = []
        if any(t.number == 1 and t.state == TrialState.RUNNING and t.params for t in trials):
            break
        assert worker.poll() is None, worker.communicate()
        time.sleep(0.05)
    else:
        pytest.fail("trial 1 never started")
    worker.send_signal(sig)
    worker.wait(timeout=60)
    trials = study_trials("k", url)
    lost_params = trials[1].params
    if sig == signal.SIGKILL:
        assert [t.number for t in trials if t.state == TrialState.RUNNING] == [1]
    else:
        assert worker.returncode == 128 + signal.SIGTERM, worker.communicate()
        assert trials[1].state == TrialState.FAIL and not [t for t in trials if t.state == TrialState.RUNNING]
        assert [t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING].count(1) == 1

    rerun = sweep([str(study)], workdir)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    trials = study_trials("k", url)
    slots = check_exact(trials, 4)
    assert superseded(trials) == {1} and trials[1].state == TrialState.FAIL
    (retry,) = [t for t in slots if t.system_attrs.get("failed_trial") == 1]
    assert retry.params == lost_params
    assert "1 lost with a worker and run again" in out
    csv = pd.read_csv(workdir / "reports" / "sweeps" / "k" / "trials.csv")
    assert len(csv) == 5 and csv.superseded.sum() == 1 and bool(csv.superseded[csv.number == 1].item())


@pytest.mark.parametrize("fields", [GRID, RANDOM], ids=["grid", "random"])
def test_three_workers_on_a_journal_file(workdir: Path, fields: dict) -> None:
    trials = workers_share(workdir, f"journal:///{(workdir / 'p.journal').as_posix()}", fields)
    assert len(trials) == fields["n_trials"]  # not one trial more, in the storage itself
    check_exact(trials, fields["n_trials"])


def test_three_workers_on_sqlite(workdir: Path) -> None:
    trials = workers_share(workdir, f"sqlite:///{(workdir / 'p.db').as_posix()}", GRID)
    assert len(trials) == 6
    check_exact(trials, 6)


def test_workers_flag_runs_processes_with_a_share_of_the_cores(workdir: Path) -> None:
    study = write_yaml(
        workdir / "w.yaml",
        tiny_study(
            "w", n_trials=4, heartbeat=SHARING_HEARTBEAT, **{k: v for k, v in RANDOM.items() if k != "n_trials"}
        ),
    )
    assert main([str(study), "--workers", "2"]) == 0
    trials = study_trials("w", journal(workdir / "reports", "w"))
    assert len(trials) == 4
    check_exact(trials, 4)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_one_worker_is_reproducible(workdir: Path) -> None:
    """The sampler's seed comes from (study seed, trial number): two runs draw the same params."""
    study = write_yaml(
        workdir / "r.yaml", tiny_study("r", n_trials=3, **{k: v for k, v in RANDOM.items() if k != "n_trials"})
    )
    runs = []
    for folder in ("a", "b"):
        assert main([str(study), "--reports-dir", folder]) == 0
        runs.append([t.params for t in study_trials("r", journal(workdir / folder, "r"))])
    assert runs[0] == runs[1] and len({p["method.sigma_min"] for p in runs[0]}) == 3


def test_a_trial_judged_lost_while_it_ran_leaves_its_worker_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI run once saw this race: on a busy SQLite lock a trial's beats came later than the grace
    period, and another worker failed it and enqueued its retry between the owner's ``tell`` reading
    the trial's state and writing its result. That ``tell`` raised ``UpdateFinishedTrialError`` and
    stopped the worker. The owner now leaves the slot to the retry, which runs it again. (Two workers
    taking one slot, on SQLite before ``make_storage``'s ``BEGIN IMMEDIATE``, ends the same way.)"""
    storage = optuna.storages.RDBStorage(f"sqlite:///{(tmp_path / 's.db').as_posix()}")
    study = optuna.create_study(study_name="s", storage=storage)
    enqueue_slots(study, 1)
    write, raced = study._storage.set_trial_state_values, []

    def racing_write(trial_id: int, state: TrialState, values=None) -> bool:
        if state == TrialState.COMPLETE and not raced:  # the other worker acts inside tell's read-then-write
            raced.append(fail_stale(study, storage, Heartbeat(interval=60, grace_period=-1)))
        return write(trial_id, state, values)

    monkeypatch.setattr(study._storage, "set_trial_state_values", racing_write)
    calls: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        return 1.0

    assert run_worker(study, storage, objective, (), Heartbeat(interval=60, grace_period=60)) == 2
    trials = study.get_trials()
    assert raced == [[0]] and calls == [0, 1]
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert superseded(trials) == {0} and [t.number for t in counted(trials)] == [1]


def test_a_trial_judged_lost_at_its_own_write_leaves_its_worker_running(tmp_path: Path) -> None:
    """The same judgement can land while the objective runs: its next write to the trial (a seed's
    result) raises ``UpdateFinishedTrialError``. The worker leaves the slot to the retry and goes on."""
    storage = make_storage(f"sqlite:///{(tmp_path / 's.db').as_posix()}")
    study = optuna.create_study(study_name="s", storage=storage)
    enqueue_slots(study, 1)
    calls: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        if trial.number == 0:  # another worker judges it lost, mid-run
            fail_stale(study, storage, Heartbeat(interval=60, grace_period=-1))
        trial.set_user_attr("seed0_nll", 1.0)
        return 1.0

    assert run_worker(study, storage, objective, (), Heartbeat(interval=60, grace_period=60)) == 2
    trials = study.get_trials()
    assert calls == [0, 1] and [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert superseded(trials) == {0} and [t.number for t in counted(trials)] == [1]


TAKE_SLOTS = """
import json, sys, time
from pathlib import Path
from fmexp.sweep.storage import make_storage
from fmexp.sweep.trial_queue import _pop


url, ready, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
storage = make_storage(url)
study_id = storage.get_study_id_from_name("q")
(ready / sys.argv[4]).touch()
while len(list(ready.iterdir())) < n:  # start together: every process has imported and connected
    time.sleep(0.001)
taken = []
while (trial_id := _pop(storage, study_id)) is not None:
    taken.append(trial_id)
print(json.dumps(taken))
"""


@pytest.mark.parametrize("scheme", ["sqlite", "journal"])
def test_workers_taking_slots_at_once_never_take_one_twice(tmp_path: Path, scheme: str) -> None:
    """Taking a slot is the queue's compare-and-set, WAITING to RUNNING: four processes that take 60
    slots as fast as they can, all at once, take each exactly once. On SQLite that needs the write
    lock from each transaction's start (``fmexp.sweep.storage._sqlite_storage`` says why); without it a CI
    run saw two workers run trial 3, and here they took 78 slots of 60."""
    url = (
        f"sqlite:///{(tmp_path / 'q.db').as_posix()}"
        if scheme == "sqlite"
        else f"journal:///{(tmp_path / 'q.journal').as_posix()}"
    )
    enqueue_slots(optuna.create_study(study_name="q", storage=make_storage(url)), 60)
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKE_SLOTS, url, str(ready), "4", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    taken = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        taken += json.loads(out)
    assert len(taken) == 60 and len(set(taken)) == 60, sorted(taken)
