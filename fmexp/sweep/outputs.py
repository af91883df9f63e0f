"""A study's declared outputs: ``trials.csv``, ``best.yaml``, ``study.yaml`` and ``importances.csv``,
written from the storage (whatever it is: a journal file, SQLite, PostgreSQL) by the worker that
ends the study; and the summary it prints. The report reads these files only."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd
import yaml

from fmexp.config.load import to_plain
from fmexp.runtime import artifacts
from fmexp.sweep.storage import redact
from fmexp.sweep.study import Study
from fmexp.sweep.trial_queue import HEARTBEAT_ATTR, counted, superseded

__all__ = ["write_outputs", "importances", "summary"]


def write_outputs(study: Study, ostudy: optuna.Study) -> None:
    """``trials.csv`` (params, objectives, state, duration, per-seed values, and ``superseded``: a
    trial lost with its worker and run again), ``best.yaml`` and ``study.yaml``."""
    names = [o.metric for o in study.config.objectives]
    trials = ostudy.get_trials(deepcopy=False)
    df = ostudy.trials_dataframe(
        attrs=("number", "state", "params", "values", "duration", "user_attrs"), multi_index=False
    )
    df = df.drop(columns=[f"user_attrs_{HEARTBEAT_ATTR}"], errors="ignore")
    df["superseded"] = df["number"].isin(superseded(trials))
    # Optuna names the objective columns value, values_<i> or, once set_metric_names ran, values_<name>
    renames = {"value": names[0]} if len(names) == 1 else {}
    df = df.rename(
        columns=renames | {f"values_{i}": n for i, n in enumerate(names)} | {f"values_{n}": n for n in names}
    )
    if "duration" in df:
        df["duration"] = df["duration"].dt.total_seconds()
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
        vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values, strict=False))
        lines.append(f"  {'pareto' if len(names) > 1 else 'best'} #{t.number}: {vals}  {t.params}")
    lines.append(f"  outputs: {study.folder}/trials.csv, {study.folder}/best.yaml")
    return "\n".join(lines)
