"""A study's declared outputs: ``trials.csv``, ``best.yaml``, ``study.yaml`` and ``importances.csv``,
written from the storage (whatever it is: a journal file, SQLite, PostgreSQL) by the worker that
ends the study; and the summary it prints. The report reads these files only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
import pandas as pd
import yaml

from fmexp.config.load import to_plain
from fmexp.flow.units import UNITS
from fmexp.runtime import artifacts
from fmexp.sweep.storage import for_dashboard, redact
from fmexp.sweep.study import Study, base_runs
from fmexp.sweep.trial_queue import HEARTBEAT_ATTR, counted, superseded

__all__ = ["write_outputs", "importances", "summary", "trial_line"]


def write_outputs(study: Study, ostudy: optuna.Study) -> None:
    """``trials.csv``, ``best.yaml`` and ``study.yaml``.

    ``trials.csv`` has a row per trial, sorted by number: its state, params and objectives (the mean
    over seeds), the mean of every other metric it scored, each seed's values (``seed<s>_<metric>``),
    the reason a failed trial failed (``error``), and ``superseded`` (a trial lost with its worker and
    run again). It holds what the trials computed, not how they ran: no durations and no worker names
    (the storage keeps those, and each trial's line says them), so a rerun of the same trials writes
    the same bytes."""
    names = [o.metric for o in study.config.objectives]
    trials = ostudy.get_trials(deepcopy=False)
    df = ostudy.trials_dataframe(attrs=("number", "state", "params", "values", "user_attrs"), multi_index=False)
    df = df.drop(columns=[f"user_attrs_{a}" for a in (HEARTBEAT_ATTR, "worker")], errors="ignore")
    df["superseded"] = df["number"].isin(superseded(trials))
    # Optuna names the objective columns value, values_<i> or, once set_metric_names ran, values_<name>
    renames = {"value": names[0]} if len(names) == 1 else {}
    df = df.rename(
        columns=renames | {f"values_{i}": n for i, n in enumerate(names)} | {f"values_{n}": n for n in names}
    )
    df = df.rename(columns=lambda c: c.removeprefix("user_attrs_"))
    seeds = sorted((c for c in df.columns if c.startswith("seed")), key=_seed_column_order)
    first = ["number", "state", *(c for c in df.columns if c.startswith("params_")), *names]
    means = sorted(c for c in df.columns if c not in {*first, *seeds, "error", "superseded"})
    rest = [c for c in ("error", "superseded") if c in df.columns]
    df = df[[*first, *means, *seeds, *rest]].sort_values("number")
    with artifacts.atomic_path(study.folder / "trials.csv") as tmp:
        df.to_csv(tmp, index=False)
    best = [
        {"number": t.number, "params": t.params, "values": dict(zip(names, t.values, strict=True))}
        for t in _best(ostudy)
    ]
    doc = {
        "study": study.config.study,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in study.config.objectives],
        "pareto_front" if len(names) > 1 else "best": best if len(names) > 1 else (best[0] if best else None),
        "study_file": str(study.path),
        "n_trials": len(counted(trials)),
    }
    artifacts.write_text(study.folder / "best.yaml", yaml.safe_dump(doc, sort_keys=False))
    artifacts.write_text(study.folder / "study.yaml", yaml.safe_dump(_study_record(study), sort_keys=False))
    with artifacts.atomic_path(study.folder / "importances.csv") as tmp:
        importances(ostudy, names).to_csv(tmp, index=False)


def _seed_column_order(column: str) -> tuple[int, str]:
    """``seed10_nll`` after ``seed2_nfe``: by seed number, then metric."""
    seed, _, metric = column.removeprefix("seed").partition("_")
    return (int(seed) if seed.isdigit() else -1, metric)


def importances(ostudy: optuna.Study, names: list[str]) -> pd.DataFrame:
    """fANOVA importances (Optuna, seed 0) of the searched params for each objective: one row per
    (objective, param), or one row with the reason where they cannot be computed (fewer than two
    completed trials, nothing searched, or every trial scored the same)."""
    done = [t for t in ostudy.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    rows: list[dict[str, object]] = []
    for i, metric in enumerate(names):
        if len(done) < 2 or not done[0].params:
            rows.append(
                {
                    "objective": metric,
                    "param": None,
                    "importance": None,
                    "note": f"{len(done)} completed trial(s) with {len(done[0].params) if done else 0} "
                    "searched param(s)",
                }
            )
            continue
        target = (lambda t, i=i: t.values[i]) if len(names) > 1 else None
        try:
            imp = optuna.importance.get_param_importances(
                ostudy, target=target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        except (RuntimeError, ValueError) as e:  # e.g. every trial scored the same
            rows.append({"objective": metric, "param": None, "importance": None, "note": str(e)})
            continue
        rows += [{"objective": metric, "param": k, "importance": v, "note": None} for k, v in imp.items()]
    return pd.DataFrame(rows, columns=["objective", "param", "importance", "note"])


def _study_record(study: Study) -> dict[str, Any]:
    config = to_plain(study.config) | {"storage": redact(study.storage)}
    return {"study_file": str(study.path), "config": config, **base_runs(study)}


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
    lines = [f"study {study.config.study}: {len(states)} trials ({counts}{rerun})"]
    names = [o.metric for o in study.config.objectives]
    for t in _best(ostudy):
        lines.append(f"  {'pareto' if len(names) > 1 else 'best'} #{t.number}: {_values(names, t.values)}  {t.params}")
    lines.append(f"  outputs: {study.folder}/trials.csv, {study.folder}/best.yaml")
    lines.append(f"  browse: optuna-dashboard {for_dashboard(study.storage)}")
    return "\n".join(lines)


def _values(names: list[str], values: Sequence[float]) -> str:
    return ", ".join(f"{n} {v:.4g} {UNITS[n]}".rstrip() for n, v in zip(names, values, strict=False))


def trial_line(study: Study, ostudy: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """One line for a finished trial: its number, how many of the study's trials have finished, its
    params, its objectives with units (or why it failed or was pruned) and its wall seconds."""
    done = sum(t.state.is_finished() for t in counted(ostudy.get_trials(deepcopy=False)))
    seconds = f" in {trial.duration.total_seconds():.1f} s" if trial.duration else ""
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    state = trial.state.name.lower()
    if trial.state == optuna.trial.TrialState.COMPLETE:
        outcome = _values([o.metric for o in study.config.objectives], trial.values)
    else:
        outcome = str(trial.user_attrs.get("error", state))
    return f"trial {trial.number} {state}{seconds} ({done}/{study.config.n_trials} finished): {params} -> {outcome}"
