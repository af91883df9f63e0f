"""The report's section of each study under ``reports/sweeps/``, from the files its sweep stage declares
(``trials.csv``, ``best.yaml``, ``importances.csv``): the trials table, the best settings, and figures of
the optimization history, the parameter importances, the Pareto front and NFE against tolerance."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import yaml

from fmexp.flow.units import UNITS
from fmexp.report.render import Figure, png

__all__ = ["sweep_sections"]


MIN_TRIALS_PER_PARAM = 2
"""fANOVA's importances are shown only for a study with at least this many completed trials per searched
param (and at least 4): with fewer, its forest splits on noise."""


def _header(record: dict[str, Any], n_done: int) -> str:
    """Dataset, method, steps, seeds, sampler and trials of a study, from its ``study.yaml``."""
    cfg, run = record.get("config", {}), record.get("base_run", {})
    sampler = cfg.get("sampler", {})
    options = ", ".join(f"{k}={v}" for k, v in (sampler.get("options") or {}).items())
    return (
        f"{cfg.get('dataset')}, method {cfg.get('method')} ({record.get('study_file')});"
        f" {run.get('train', {}).get('steps')} training steps, seeds {cfg.get('seeds')};"
        f" sampler {sampler.get('name')}{f' ({options})' if options else ''}, pruner"
        f" {cfg.get('pruner', {}).get('name')}; {n_done} of {cfg.get('n_trials')} trials complete"
    )


def _trials_table(done: pd.DataFrame, objectives: list[dict[str, str]]) -> pd.DataFrame:
    """The completed trials sorted by the first objective (best first): params, and each objective's
    mean ± std over seeds."""
    first = objectives[0]
    rows = done.sort_values(first["metric"], ascending=first["direction"] == "minimize")
    table = rows[["number", *(c for c in rows if c.startswith("params_"))]].rename(
        columns=lambda c: c.removeprefix("params_")
    )
    for o in objectives:
        metric = o["metric"]
        seeds = rows[[c for c in rows if re.fullmatch(rf"seed\d+_{metric}", c)]]  # not seed0_nfe_nll for nll
        std = seeds.std(axis=1, ddof=1) if seeds.shape[1] > 1 else pd.Series(0.0, index=rows.index)
        unit = f" ({UNITS[metric]})" if UNITS.get(metric) else ""
        table[f"{metric}{unit}, {o['direction']}"] = [
            f"{m:.4g} ± {sd:.2g}" for m, sd in zip(rows[metric], std.fillna(0.0), strict=True)
        ]
    return table


def _best_table(best: dict[str, Any]) -> pd.DataFrame:
    """The best trial (or the Pareto front) as rows of trial number, params and objective values."""
    trials = best.get("pareto_front") or ([best["best"]] if best.get("best") else [])
    return pd.DataFrame([{"trial": t["number"], **t["params"], **t.get("values", {})} for t in trials])


def sweep_sections(reports_dir: Path, fig_dir: Path) -> tuple[list[dict[str, Any]], list[Figure]]:
    """Each study under ``reports/sweeps/``, from its declared outputs: a header (dataset, budget,
    seeds, sampler), its trials sorted by objective with the seeds' spread, its best trials as a table,
    and figures of its history, parameter importances (where enough trials exist), Pareto front and
    NFE against tolerance."""
    sweeps, figs = [], []
    for folder in sorted((reports_dir / "sweeps").glob("*")):
        if not (folder / "trials.csv").exists():
            continue
        trials = pd.read_csv(folder / "trials.csv")
        best = yaml.safe_load((folder / "best.yaml").read_text()) if (folder / "best.yaml").exists() else {}
        record = yaml.safe_load((folder / "study.yaml").read_text()) if (folder / "study.yaml").exists() else {}
        objectives = [o["metric"] for o in best.get("objectives", [])]
        done = trials[trials.state == "COMPLETE"]
        name = folder.name
        html = {"index": False, "float_format": "{:.4g}".format, "classes": "data"}
        sweeps.append(
            {
                "name": name,
                "header": _header(record, len(done)),
                "table": _trials_table(done, best["objectives"]).to_html(**html) if len(done) else "",
                "best": _best_table(best).to_html(**html) if best else "",
            }
        )
        if done.empty:
            continue
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3), squeeze=False)
        ordered = done.sort_values("number")
        for ax, metric, o in zip(axes[0], objectives, best["objectives"], strict=False):
            sns.scatterplot(data=ordered, x="number", y=metric, ax=ax)
            running = ordered[metric].cummin() if o["direction"] == "minimize" else ordered[metric].cummax()
            ax.plot(ordered["number"], running, color="C1", label="best so far")
            ax.set_xlabel("trial")
            ax.set_ylabel(f"{metric} ({UNITS[metric]})" if UNITS.get(metric) else metric)
            ax.legend()
        figs.append(
            Figure(
                f"Sweep {name}: optimization history",
                "Objective per trial and the best so far.",
                f"sweep_{name}_history",
                png(fig, fig_dir / f"sweep_{name}_history.png"),
            )
        )
        params_cols = [c for c in done if c.startswith("params_")]
        importance = (
            pd.read_csv(folder / "importances.csv") if (folder / "importances.csv").exists() else pd.DataFrame()
        )
        enough = len(done) >= max(4, MIN_TRIALS_PER_PARAM * len(params_cols))
        if enough and not importance.empty and importance["importance"].notna().any():
            fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 2.6), squeeze=False)
            for ax, metric in zip(axes[0], objectives, strict=True):
                rows = importance[(importance.objective == metric) & importance.importance.notna()]
                if rows.empty:
                    notes = importance[importance.objective == metric].note.dropna()
                    ax.text(
                        0.5,
                        0.5,
                        f"no importances:\n{notes.iloc[0] if len(notes) else ''}",
                        ha="center",
                        va="center",
                        wrap=True,
                    )
                    ax.set_axis_off()
                    continue
                sns.barplot(x=rows.importance.tolist(), y=rows.param.tolist(), ax=ax, orient="h")
                ax.set_title(metric)
            figs.append(
                Figure(
                    f"Sweep {name}: parameter importances",
                    "fANOVA importances (Optuna) for each objective.",
                    f"sweep_{name}_importance",
                    png(fig, fig_dir / f"sweep_{name}_importance.png"),
                )
            )
        if len(objectives) >= 2:
            pareto = {t["number"] for t in best.get("pareto_front", [])}
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            hue = done["number"].map(lambda n, pareto=pareto: "Pareto front" if n in pareto else "dominated")
            style = done[params_cols[0]] if params_cols else None
            sns.scatterplot(data=done, x=objectives[0], y=objectives[1], hue=hue, style=style, ax=ax, s=60)
            figs.append(
                Figure(
                    f"Sweep {name}: Pareto front",
                    f"{objectives[0]} against {objectives[1]}.",
                    f"sweep_{name}_pareto",
                    png(fig, fig_dir / f"sweep_{name}_pareto.png"),
                )
            )
        if "params_sample.rtol" in done and "nfe" in done:
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            sns.scatterplot(
                data=done,
                x="params_sample.rtol",
                y="nfe",
                hue=params_cols[0] if params_cols[0] != "params_sample.rtol" else None,
                ax=ax,
            )
            ax.set_xscale("log")
            figs.append(
                Figure(
                    f"Sweep {name}: NFE against tolerance",
                    "dopri5 NFE at each sampled rtol.",
                    f"sweep_{name}_tolerance",
                    png(fig, fig_dir / f"sweep_{name}_tolerance.png"),
                )
            )
    return sweeps, figs
