"""Few-step samplers compared: which fixed-step solver and time grid (``fmexp.flow.grids``) gives the best
samples at a small budget of field evaluations per path, with the seeds' noise.

Quality is the FID of the ladder's samples on image data (``score/fid_ladder.csv``) and the sliced W2
distance to the held-out split otherwise (``ladder.csv``); lower is better for both. At each budget the
samplers are ranked by their mean over seeds, and the best is tested against the runner-up by the
paired t-test across seeds (``fmexp.report.stats``: a seed's samplers start from the same noise).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from fmexp.config.schema import Params
from fmexp.report.figures import nfe_axis, read_csvs
from fmexp.report.render import Figure, png
from fmexp.report.stats import SIGNIFICANCE, paired_p

__all__ = ["BUDGETS", "sampler_quality", "sampler_table", "sampler_display", "sampler_figure", "sampler_summary"]

BUDGETS = (4, 8, 16)
"""The budgets (NFE per path) the comparison reports: the few-step regime."""

_KEYS = ["dataset", "method", "seed", "solver", "grid", "nfe"]


def sampler_quality(params: Params, runs_dir: Path) -> pd.DataFrame:
    """One row per dataset, method, seed, solver, grid and NFE with ``quality`` (FID on images, else the
    sliced W2 distance) and ``measure``, its name."""
    ladder = read_csvs(params, runs_dir, "ladder.csv")
    if ladder.empty:
        return pd.DataFrame(columns=[*_KEYS, "quality", "measure"])
    ladder = ladder.assign(grid=ladder.get("grid", "uniform"), quality=ladder["distance"], measure="sliced W2")
    fid = read_csvs(params, runs_dir, "score/fid_ladder.csv")
    if not fid.empty:
        fid = fid.assign(grid=fid.get("grid", "uniform"), quality=fid["fid"], measure="FID")
        ladder = pd.concat([ladder[~ladder.dataset.isin(set(fid.dataset))], fid], ignore_index=True)
    return ladder[[*_KEYS, "quality", "measure"]]


def _sampler(solver: str, grid: str) -> str:
    return solver if grid == "uniform" else f"{solver} ({grid})"


def sampler_table(quality: pd.DataFrame, budgets: tuple[int, ...] = BUDGETS) -> pd.DataFrame:
    """Per dataset, method and budget where two samplers or more ran: the best sampler and the runner-up
    (mean ± sd over seeds), their paired p-value, and how many samplers ran at that budget."""
    rows = []
    q = quality.assign(sampler=[_sampler(s, g) for s, g in zip(quality.solver, quality.grid, strict=True)])
    for (dataset, method, nfe), group in q[q.nfe.isin(budgets)].groupby(["dataset", "method", "nfe"], sort=False):
        by_seed = group.pivot_table(index="seed", columns="sampler", values="quality", aggfunc="first")
        ranked = by_seed.mean().sort_values()
        if len(ranked) < 2:  # nothing to compare (a reflow round samples Euler only)
            continue
        best, second = ranked.index[0], ranked.index[1]
        sd = by_seed.std()
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "nfe": int(nfe),
                "measure": group.measure.iloc[0],
                "best": best,
                "best_mean": ranked.iloc[0],
                "best_sd": sd[best],
                "runner_up": second,
                "runner_up_mean": ranked.iloc[1],
                "runner_up_sd": sd[second],
                "p": paired_p(by_seed[best].to_numpy(), by_seed[second].to_numpy()),
                "samplers": len(ranked),
                "seeds": len(by_seed),
            }
        )
    return pd.DataFrame(rows)


def sampler_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: the winner in bold where the paired test separates it."""

    def cell(name: str, mean: float, sd: float, bold: bool) -> str:
        text = f"{name}: {mean:.3g} ± {sd:.2g}"
        return f"**{text}**" if bold else text

    return pd.DataFrame(
        {
            "dataset": table.dataset,
            "method": table.method,
            "NFE": table.nfe,
            "measure": table.measure,
            "best": [cell(r.best, r.best_mean, r.best_sd, r.p < SIGNIFICANCE) for r in table.itertuples()],
            "runner-up": [cell(str(r.runner_up), r.runner_up_mean, r.runner_up_sd, False) for r in table.itertuples()],
            "p (paired)": [f"{p:.2g}" for p in table.p],
        }
    )


def sampler_summary(table: pd.DataFrame) -> str:
    """One sentence per budget: how often each sampler wins, and how often significantly."""
    parts = []
    for nfe, group in table.groupby("nfe"):
        wins = group.best.value_counts()
        significant = group[group.p < SIGNIFICANCE].best.value_counts()
        counts = ", ".join(f"{name} {n} ({significant.get(name, 0)} at p < {SIGNIFICANCE})" for name, n in wins.items())
        parts.append(f"at {nfe} NFE the best of {len(group)} cells: {counts}")
    return "; ".join(parts) + "." if parts else ""


def sampler_figure(quality: pd.DataFrame, fig_dir: Path) -> list[Figure]:
    """Quality against NFE, a panel per dataset and method, a colour per solver and a line style per grid."""
    if quality.empty or quality.grid.nunique() < 2 and quality.solver.nunique() < 2:
        return []
    g = sns.relplot(
        data=quality,
        x="nfe",
        y="quality",
        hue="solver",
        style="grid",
        row="dataset",
        col="method",
        kind="line",
        markers=True,
        errorbar="sd",
        height=2.2,
        aspect=1.2,
        facet_kws={"sharex": False, "sharey": False},
    )
    g.set_titles(template="{row_name} / {col_name}")
    for (dataset, _), ax in g.axes_dict.items():
        rows = quality[quality.dataset == dataset]
        nfe_axis(ax, rows.nfe)
        ax.set_yscale("log")
        ax.set_ylabel(rows.measure.iloc[0] if len(rows) else "")
    name = "samplers"
    path = png(g.figure, fig_dir / f"{name}.png")
    return [
        Figure(
            "Few-step samplers: solver and time grid",
            "Sample quality (log scale; FID for images, sliced W2 to held-out data otherwise) against NFE per path,"
            " per solver on the uniform grid and on EDM's (Karras et al. 2022). Mean ± sd over seeds.",
            name,
            path,
        )
    ]
