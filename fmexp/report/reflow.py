"""Reflow's comparison (Liu et al. 2022): each round against the flow it came from, on the same seed, at equal
NFE. The claim tested: after reflow, 1- and 2-step Euler samples are much closer to the data.

Each round's score stage wrote both sides (``fmexp.pipeline.stages.score``): the exact W2 to held-out data
after 1, 2, 4 and 8 Euler steps, dopri5's NFE and the straightness. A seed's round trains on couples of its
own seed's flow, so the two are paired by seed: the paired t-test across seeds (``fmexp.report.stats``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from fmexp.config.schema import Params, parse_reflow
from fmexp.flow.units import REFLOW_STEPS
from fmexp.pipeline.layout import RunFiles
from fmexp.report.figures import nfe_axis
from fmexp.report.render import Figure, png
from fmexp.report.stats import SIGNIFICANCE, paired_p
from fmexp.runtime import artifacts

__all__ = ["reflow_table", "reflow_claim", "reflow_figure", "couples_cost"]

QUANTITIES = {
    **{f"w2_euler_{k}": f"W2, {k} Euler step{'s' if k > 1 else ''}" for k in REFLOW_STEPS},
    "nfe": "dopri5 NFE",
    "straightness": "straightness",
}
"""The round's metric, by its label; the previous flow's is ``before_<metric>``."""


def reflow_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, round and quantity: the previous flow's and the round's mean ± sd over seeds, their ratio
    and the paired p-value. ``metrics``: one row per scored seed (``collect_metrics``)."""
    if "straightness" not in metrics:
        return pd.DataFrame()
    rounds = metrics[metrics.straightness.notna()]
    rows = []
    for (dataset, method), g in rounds.groupby(["dataset", "method"], sort=False):
        g = g.sort_values("seed")
        for column, label in QUANTITIES.items():
            after, before = g[column].to_numpy(float), g[f"before_{column}"].to_numpy(float)
            rows.append(
                {
                    "dataset": dataset,
                    "round": method,
                    "quantity": label,
                    "before_mean": before.mean(),
                    "before_sd": before.std(ddof=1) if len(before) > 1 else 0.0,
                    "after_mean": after.mean(),
                    "after_sd": after.std(ddof=1) if len(after) > 1 else 0.0,
                    "ratio": after.mean() / before.mean(),
                    "p": paired_p(after, before),
                    "seeds": len(g),
                }
            )
    return pd.DataFrame(rows)


def reflow_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it; the better side bold where the paired test separates them."""

    def cell(mean: float, sd: float, bold: bool) -> str:
        text = f"{mean:.3g} ± {sd:.2g}"
        return f"**{text}**" if bold else text

    significant = table.p < SIGNIFICANCE
    return pd.DataFrame(
        {
            "dataset": table.dataset,
            "round": table["round"],
            "quantity": table.quantity,
            "before": [
                cell(r.before_mean, r.before_sd, s and r.before_mean < r.after_mean)
                for r, s in zip(table.itertuples(), significant, strict=True)
            ],
            "after": [
                cell(r.after_mean, r.after_sd, s and r.after_mean < r.before_mean)
                for r, s in zip(table.itertuples(), significant, strict=True)
            ],
            "after / before": [f"{x:.2g}" for x in table.ratio],
            "p (paired)": [f"{p:.2g}" for p in table.p],
        }
    )


def reflow_claim(table: pd.DataFrame) -> str:
    """Whether reflow's claim holds here: the 1- and 2-step W2 lower after the round, at p < 0.05, on every
    reflowed cell; with the ratios."""
    few = table[table.quantity.isin([QUANTITIES["w2_euler_1"], QUANTITIES["w2_euler_2"]])]
    if few.empty:
        return ""
    holds = bool(((few.after_mean < few.before_mean) & (few.p < SIGNIFICANCE)).all())
    parts = [f"{r.dataset} {r.quantity}: x{r.ratio:.2f} (p = {r.p:.2g})" for r in few.itertuples()]
    verdict = "holds" if holds else "does not hold on every cell"
    return (
        f"Reflow's claim (1- and 2-step samples much closer to the data after reflow) {verdict} here, after / before"
        f" by paired t-test over {int(few.seeds.max())} seeds: " + "; ".join(parts) + "."
    )


def couples_cost(params: Params, runs_dir: Path) -> pd.DataFrame:
    """Per dataset and round: the couples' count, their solves' mean dopri5 NFE and wall seconds (mean over
    seeds, from each seed's ``reflow.json`` and its log)."""
    rows = []
    for dataset, method in params.cell_list():
        if parse_reflow(method) is None:
            continue
        for seed in params.pipeline.seeds:
            files = RunFiles(Path(runs_dir) / dataset / method, seed)
            if files.couples_info.exists() and files.log("reflow").exists():
                info = artifacts.read_json(files.couples_info)
                seconds = artifacts.read_json(files.log("reflow"))["seconds"]
                rows.append(
                    {
                        "dataset": dataset,
                        "round": method,
                        "couples": info["n_pairs"],
                        "nfe": info["nfe"],
                        "seconds": seconds,
                    }
                )
    frame = pd.DataFrame(rows)
    return frame.groupby(["dataset", "round"], sort=False).mean().reset_index() if not frame.empty else frame


def reflow_figure(metrics: pd.DataFrame, fig_dir: Path) -> list[Figure]:
    """W2 to held-out data against NFE: Euler at 1, 2, 4 and 8 steps, before and after each round."""
    if "straightness" not in metrics or metrics.straightness.isna().all():
        return []
    rounds = metrics[metrics.straightness.notna()]
    long = pd.concat(
        [
            pd.DataFrame(
                {
                    "dataset": rounds.dataset,
                    "flow": [f"{m} ({side})" for m in rounds.method],
                    "nfe": k,
                    "w2": rounds[f"{prefix}w2_euler_{k}"],
                }
            )
            for k in REFLOW_STEPS
            for prefix, side in (("before_", "before"), ("", "after"))
        ],
        ignore_index=True,
    )
    g = sns.relplot(
        data=long,
        x="nfe",
        y="w2",
        hue="flow",
        col="dataset",
        kind="line",
        markers=True,
        errorbar="sd",
        height=3,
        aspect=1.2,
        facet_kws={"sharey": False},
    )
    g.set_titles(col_template="{col_name}")
    for ax in g.axes.flat:
        nfe_axis(ax, long.nfe)
        ax.set_ylabel("W2 to held-out data")
    name = "reflow"
    return [
        Figure(
            "Reflow: few-step quality before and after",
            "Exact W2 of Euler samples to held-out data against NFE, for the flow a round came from (before)"
            " and the round (after), from the same noise. Mean ± sd over seeds.",
            name,
            png(g.figure, fig_dir / f"{name}.png"),
        )
    ]
