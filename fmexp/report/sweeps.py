"""The report's section of each study under ``reports/sweeps/``, from the files its sweep stage declares
(``trials.csv``, ``best.yaml``, ``importances.csv``): the trials table, the best settings, and figures of
the optimization history, the parameter importances, the Pareto front and NFE against tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import yaml

from fmexp.report.figures import Figure, png

__all__ = ["sweep_sections"]


def sweep_sections(reports_dir: Path, fig_dir: Path) -> tuple[list[dict[str, Any]], list[Figure]]:
    """Each study under ``reports/sweeps/``, from its declared outputs: its trials table and best
    settings, and figures of its history, parameter importances, Pareto front and NFE against
    tolerance."""
    sweeps, figs = [], []
    for folder in sorted((reports_dir / "sweeps").glob("*")):
        if not (folder / "trials.csv").exists():
            continue
        trials = pd.read_csv(folder / "trials.csv")
        best = yaml.safe_load((folder / "best.yaml").read_text()) if (folder / "best.yaml").exists() else {}
        objectives = [o["metric"] for o in best.get("objectives", [])]
        done = trials[trials.state == "COMPLETE"]
        name = folder.name
        sweeps.append(
            {
                "name": name,
                "table": done.drop(columns=[c for c in done if c.startswith("user_attrs")]).to_html(
                    index=False, float_format="{:.4g}".format, classes="data"
                ),
                "best": yaml.safe_dump(best, sort_keys=False),
            }
        )
        if done.empty:
            continue
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3), squeeze=False)
        for ax, metric, o in zip(axes[0], objectives, best["objectives"], strict=False):
            sns.scatterplot(data=done, x="number", y=metric, ax=ax)
            running = done[metric].cummin() if o["direction"] == "minimize" else done[metric].cummax()
            ax.plot(done["number"], running, color="C1", label="best so far")
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
        if not importance.empty and importance["importance"].notna().any():
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
