"""A study's objective: one trial's runs, through the pipeline's own train, sample and score stages."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import torch

from fmexp.config.plan import load_data
from fmexp.data.datasets import Dataset
from fmexp.errors import ConfigError, SolverError, TrainingDiverged
from fmexp.pipeline.layout import RunFiles
from fmexp.pipeline.stages.reflow import reflow_run
from fmexp.pipeline.stages.sample import sample_run
from fmexp.pipeline.stages.score import score_run
from fmexp.pipeline.stages.train import train_run
from fmexp.sweep.study import Study

__all__ = ["TRIAL_FAILURES", "make_objective"]

TRIAL_FAILURES = (ConfigError, TrainingDiverged, SolverError, torch.OutOfMemoryError)
"""What fails one trial (recorded in its ``error`` user attr) and lets the study go on."""


def _suggest(trial: optuna.Trial, key: str, d: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, d.choices)
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
    assert isinstance(d, optuna.distributions.FloatDistribution)  # to_distribution makes no other kind
    return trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)


def _scored(result: dict[str, float | str | None], objectives: list[str]) -> dict[str, float]:
    """What a trial's seed scored, for ``trials.csv``: every numeric metric, but the wall times that are
    no objective (they differ from run to run, and would make the file differ too)."""
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, int | float) and (not k.endswith("_seconds") or k in objectives)
    }


def make_objective(study: Study) -> Callable[[optuna.Trial], float | tuple[float, ...]]:
    """The study's objective: a trial's sampled values applied to the base run (and to each reflow round
    where ``reflow.round`` is searched), every seed trained, sampled and scored by the pipeline's own stage
    functions in ``trials/<number>/<method>/``, the mean over seeds returned."""
    cache: dict[tuple[str, str, str], Dataset] = {}
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
        chain = study.runs(values, f"trial {trial.number}")
        run = chain[-1]  # the scored run: the base run, or the last reflow round of it
        key = (run.dataset, repr(run.data), repr(run.pair))
        if key not in cache:
            cache[key] = load_data(run.data, run.dataset, run.dataset_spec, run.pair, run.pair_specs)
        folder = study.folder / "trials" / f"{trial.number:04d}"
        per_seed: dict[str, list[float]] = {}
        for i, seed in enumerate(study.config.seeds):
            offset = i * run.train.steps

            def on_eval(row: dict[str, float], offset: int = offset, seed: int = seed) -> None:
                if single and metrics[0] in row:  # reported with or without a pruner: optuna-dashboard draws the curves
                    trial.report(row[metrics[0]], offset + int(row["step"]))
                    if prune and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned at step {row['step']} of seed {seed}")

            for j, link in enumerate(chain):  # a round's couples come from the run before it (reflow stage)
                seeded, files = replace(link, seed=seed), RunFiles(folder / link.method_name, seed)
                if link.reflow is not None:
                    reflow_run(seeded, cache[key], files)
                train_run(seeded, cache[key], files, on_eval=on_eval if link is run else None, progress=False)
                if j >= len(chain) - 2:  # the scored run, and the flow its round came from (scored against it)
                    sample_run(seeded, cache[key], files)
            result = score_run(seeded, cache[key], files, density=False)
            for m, value in _scored(result, metrics).items():
                per_seed.setdefault(m, []).append(value)
                trial.set_user_attr(f"seed{seed}_{m}", value)
        mean = {m: sum(v) / len(v) for m, v in per_seed.items() if len(v) == len(study.config.seeds)}
        for m, value in mean.items():
            if m not in metrics:  # the objectives are the trial's values
                trial.set_user_attr(m, value)
        means = tuple(mean[m] for m in metrics)
        return means[0] if len(means) == 1 else means

    return objective
