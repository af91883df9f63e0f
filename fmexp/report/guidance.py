"""Classifier-free guidance's trade-off (Ho and Salimans 2022): a class-conditional flow sampled at each
guidance scale w of ``sample.guidance``. The trade-off expected: the classifier's accuracy on the samples
against their requested labels rises with w, and FID is best at a moderate w.

Each class-conditional run's score stage wrote ``score/guidance.csv`` (``fmexp.pipeline.stages.score``):
per w, FID against the training split and the accuracy, overall and per class, of the same 359 noise
draws and labels. A seed's scales share that noise, so they are paired by seed: the paired t-test across
seeds against w = 0 (``fmexp.report.stats``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fmexp.config.load import run_for
from fmexp.config.schema import Params
from fmexp.pipeline.layout import RunFiles
from fmexp.report.figures import read_csvs, show_tiles, tile
from fmexp.report.render import Figure, png
from fmexp.report.stats import SIGNIFICANCE, paired_p
from fmexp.runtime import artifacts

__all__ = [
    "conditional_cells",
    "guidance_table",
    "guidance_display",
    "guidance_claim",
    "likelihood_summary",
    "guidance_figures",
]

PER_CLASS = 3
"""Samples per class and scale in the report's grid."""


def conditional_cells(params: Params) -> set[tuple[str, str]]:
    """The pipeline's class-conditional (dataset, method) cells: those whose runs set ``train.label_dropout``.
    Their likelihood is ``-log p(x | y)`` and their FID of fewer samples: the paper's tables leave them out."""
    seed = params.pipeline.seeds[0]
    return {(d, m) for d, m in params.cell_list() if run_for(params, d, m, seed).train.label_dropout is not None}


def guidance_table(params: Params, runs_dir: Path) -> pd.DataFrame:
    """Per dataset, method and w: FID and accuracy, mean and sd over seeds, each with the paired p-value
    against w = 0, and each class's accuracy (mean over seeds); the sampler, its NFE and the rows per
    network call (2: conditional and null stacked)."""
    frame = read_csvs(params, runs_dir, "score/guidance.csv")
    if frame.empty:
        return frame
    rows = []
    for (dataset, method), g in frame.groupby(["dataset", "method"], sort=False):
        by_seed = {q: g.pivot_table(index="seed", columns="w", values=q, aggfunc="first") for q in ("fid", "accuracy")}
        for w in sorted(g.w.unique()):
            at = g[g.w == w].iloc[0]
            row: dict[str, object] = {
                "dataset": dataset,
                "method": method,
                "w": w,
                "sampler": at.sampler,
                "nfe": int(at.nfe),
                "rows_per_call": int(at.rows_per_call),
                "samples": int(at.samples),
                "seeds": len(by_seed["fid"]),
            }
            for q, table in by_seed.items():
                values = table[w].to_numpy(float)
                row[f"{q}_mean"] = values.mean()
                row[f"{q}_sd"] = values.std(ddof=1) if len(values) > 1 else 0.0
                row[f"{q}_p"] = paired_p(values, table[0.0].to_numpy(float)) if w != 0 and 0.0 in table else np.nan
            per_class = [c for c in g if c.startswith("accuracy_")]  # the mean over seeds of each class's
            row.update(g[g.w == w][per_class].mean().add_suffix("_mean").to_dict())
            rows.append(row)
    return pd.DataFrame(rows)


def guidance_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: mean ± sd and p against w = 0; bold where that test separates them."""

    def cell(mean: float, sd: float, p: float, digits: str) -> str:
        text = f"{mean:{digits}} ± {sd:{digits}}"
        return f"**{text}**" if p < SIGNIFICANCE else text

    return pd.DataFrame(
        {
            "dataset": table.dataset,
            "method": table.method,
            "w": [f"{w:g}" for w in table.w],
            "sampler (NFE)": [f"{s} ({n})" for s, n in zip(table.sampler, table.nfe, strict=True)],
            "FID": [cell(r.fid_mean, r.fid_sd, r.fid_p, ".3g") for r in table.itertuples()],
            "p (FID)": [f"{p:.2g}" for p in table.fid_p],
            "accuracy": [cell(r.accuracy_mean, r.accuracy_sd, r.accuracy_p, ".3f") for r in table.itertuples()],
            "p (accuracy)": [f"{p:.2g}" for p in table.accuracy_p],
        }
    )


def guidance_claim(table: pd.DataFrame) -> str:
    """Whether the known trade-off shows, per cell: accuracy at the largest w above w = 0's (paired p), and
    FID's best mean at a w strictly between the ends, below w = 0's (paired p)."""
    parts = []
    for (dataset, method), g in table.groupby(["dataset", "method"], sort=False):
        g = g.sort_values("w")
        top, best = g.iloc[-1], g.loc[g.fid_mean.idxmin()]
        base = g[g.w == 0]
        if base.empty or len(g) < 3:
            continue
        base_row = base.iloc[0]
        rises = top.accuracy_mean > base_row.accuracy_mean and top.accuracy_p < SIGNIFICANCE
        moderate = 0 < best.w < top.w and best.fid_p < SIGNIFICANCE
        verdict = "shows" if rises and moderate else "does not show" if not (rises or moderate) else "shows in part"
        fid = (
            f"FID best at w = 0 ({best.fid_mean:.3g}): no guidance scale improves it"
            if best.w == 0
            else f"FID best at w = {best.w:g}, {best.fid_mean:.3g} against {base_row.fid_mean:.3g} at w = 0"
            f" (p = {best.fid_p:.2g})"
        )
        parts.append(
            f"{dataset} {method}: the trade-off {verdict}: accuracy {base_row.accuracy_mean:.3f} at w = 0 ->"
            f" {top.accuracy_mean:.3f} at w = {top.w:g} (p = {top.accuracy_p:.2g}); {fid}"
        )
    seeds = int(table.seeds.max()) if not table.empty else 0
    return f"Paired t-tests over {seeds} seeds. " + "; ".join(parts) + "." if parts else ""


def likelihood_summary(metrics: pd.DataFrame, cells: set[tuple[str, str]]) -> str:
    """Bits/dim of the conditional cells under each held-out image's own label and under the null label
    (mean ± sd over seeds, paired p): the label's information, as a density."""
    if "bpd_null" not in metrics:
        return ""
    parts = []
    for (dataset, method), g in metrics[metrics.bpd_null.notna()].groupby(["dataset", "method"], sort=False):
        if (dataset, method) not in cells:
            continue
        own, null = g.bpd.to_numpy(float), g.bpd_null.to_numpy(float)
        parts.append(
            f"{dataset} {method}: {own.mean():.3f} ± {own.std(ddof=1) if len(own) > 1 else 0:.3f} under the own label,"
            f" {null.mean():.3f} ± {null.std(ddof=1) if len(null) > 1 else 0:.3f} under the null label"
            f" (p = {paired_p(own, null):.2g})"
        )
    return (
        "Bits/dim of the held-out images, -log p(x | y) (none for w != 0, whose field is no trained density): "
        + "; ".join(parts)
        + "."
        if parts
        else ""
    )


def guidance_figures(params: Params, table: pd.DataFrame, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    """The trade-off curve (FID against accuracy, one point per w, mean ± sd over seeds) and, for the first
    seed, a grid of samples per class (rows) and scale (columns)."""
    if table.empty:
        return []
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for (dataset, method), g in table.groupby(["dataset", "method"], sort=False):
        g = g.sort_values("w")
        ax.errorbar(
            g.accuracy_mean,
            g.fid_mean,
            xerr=g.accuracy_sd,
            yerr=g.fid_sd,
            marker="o",
            capsize=2,
            label=f"{dataset} {method}",
        )
        for r in g.itertuples():
            ax.annotate(f"w={r.w:g}", (r.accuracy_mean, r.fid_mean), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("classifier accuracy on the requested labels")
    ax.set_ylabel("FID (against the training split)")
    ax.legend()
    figures = [
        Figure(
            "Guidance: the trade-off",
            "FID against the classifier's accuracy at each guidance scale w, from the same noise and labels;"
            " mean ± sd over seeds.",
            "guidance_tradeoff",
            png(fig, fig_dir / "guidance_tradeoff.png"),
        )
    ]
    return figures + _class_grid(params, table, runs_dir, fig_dir)


def _class_grid(params: Params, table: pd.DataFrame, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    """Per conditional cell (first seed): ``PER_CLASS`` samples of each requested class (rows) at each w
    (column blocks)."""
    seed = params.pipeline.seeds[0]
    cells = list(table.groupby(["dataset", "method"], sort=False).groups)
    stored = {
        cell: artifacts.load_torch(files.samples)
        for cell in cells
        if (files := RunFiles(runs_dir / cell[0] / cell[1], seed)).samples.exists()
    }
    if not stored:
        return []
    fig, axes = plt.subplots(1, len(stored), figsize=(4.5 * len(stored), 4.2), squeeze=False)
    for ax, ((dataset, method), state) in zip(axes[0], stored.items(), strict=True):
        guided, levels = state["guided"], state["levels"]
        labels = state["labels"][: len(next(iter(guided.values())))]
        rows = []
        for c in sorted(set(labels.tolist())):
            index = (labels == c).nonzero().flatten()[:PER_CLASS]
            rows += [_pad(x[index].float().numpy() / (levels - 1), PER_CLASS) for x in guided.values()]
        show_tiles(ax, tile(np.concatenate(rows), len(guided) * PER_CLASS))
        ax.set_title(f"{dataset} {method}: w = " + ", ".join(guided), fontsize=9)
    return [
        Figure(
            "Guidance: samples per class",
            f"Rows: the requested class; column blocks of {PER_CLASS}: the guidance scales w in the title's order;"
            f" seed {seed}, the same noise across w.",
            "guidance_classes",
            png(fig, fig_dir / "guidance_classes.png"),
        )
    ]


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` ``(k, C, H, W)`` padded with white images to ``n`` (a class with fewer than ``PER_CLASS``)."""
    return np.concatenate([x, np.ones((n - len(x), *x.shape[1:]))]) if len(x) < n else x
