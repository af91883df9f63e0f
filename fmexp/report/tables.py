"""The paper's table layout: methods by metric, mean ± std over seeds, the best mean in bold where a
paired t-test across seeds, Holm-corrected over the comparisons with the best, separates it from every
other method (``fmexp.report.stats``)."""

from __future__ import annotations

import pandas as pd

from fmexp.flow.units import table_columns
from fmexp.report.stats import SIGNIFICANCE, holm, paired_p

__all__ = ["COLUMNS", "IMAGE_COLUMNS", "method_table"]

COLUMNS = table_columns("flat")
IMAGE_COLUMNS = table_columns("image")  # the paper's Table 1, and FID∞


def method_table(metrics: pd.DataFrame, dataset: str, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's layout for one dataset: (numeric frame, display frame with 'mean ± std').

    The numeric frame holds each column's mean and std over seeds, ``<col>_p``: the paired t-test
    p-value of the best mean (lowest) against this method's, and ``<col>_p_holm``: that p-value
    Holm-corrected over the k - 1 comparisons of the best with the others (``fmexp.report.stats``). A
    best mean is bold only where every corrected p-value is below 0.05, so a difference within the
    seed noise is never shown as a win.
    """
    df = metrics[metrics.dataset == dataset]
    columns = IMAGE_COLUMNS if "bpd" in df and df["bpd"].notna().any() else COLUMNS
    columns = {c: label for c, label in columns.items() if c in df}
    order = [m for m in methods if m in set(df.method)]
    stats = df.groupby("method")[list(columns)].agg(["mean", "std"]).reindex(order)
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    stats["seeds"] = df.groupby("method").size()
    display = pd.DataFrame(index=stats.index)
    for col, label in columns.items():
        mean, std = stats[f"{col}_mean"], stats[f"{col}_std"].fillna(0.0)
        best = str(mean.idxmin()) if mean.notna().any() else ""
        by_seed = df.pivot_table(index="seed", columns="method", values=col, aggfunc="first")
        raw = [float("nan") if m == best else _paired(by_seed, best, m) for m in order]
        stats[f"{col}_p"], stats[f"{col}_p_holm"] = raw, holm(raw)
        others = [p for m, p in zip(order, stats[f"{col}_p_holm"], strict=True) if m != best]
        significant = bool(others) and all(p < SIGNIFICANCE for p in others)
        fmt = {"nfe": "{:.0f} ± {:.0f}", "fid": "{:.1f} ± {:.1f}", "fid_inf": "{:.1f} ± {:.1f}"}.get(
            col, "{:.3f} ± {:.3f}"
        )
        cells = [fmt.format(a, b) for a, b in zip(mean, std, strict=False)]
        display[label] = [
            f"**{c}**" if m == best and significant else c for m, c in zip(stats.index, cells, strict=True)
        ]
    display.index.name = "method"
    return stats, display


def _paired(by_seed: pd.DataFrame, a: str, b: str) -> float:
    """The paired p-value of methods ``a`` and ``b`` over the seeds that both scored."""
    if a not in by_seed or b not in by_seed:
        return float("nan")
    pairs = by_seed[[a, b]].dropna()
    return paired_p(pairs[a].to_numpy(), pairs[b].to_numpy())


def by_seed(trials: pd.DataFrame, dataset: str, seeds: list[int]) -> pd.DataFrame:
    """A study's trials as the tables' rows: one per (method, seed), every metric scored, from the trials'
    ``params_method`` and ``seed<s>_<metric>`` columns."""
    rows = []
    for _, t in trials.iterrows():
        for s in seeds:
            values = {c.removeprefix(f"seed{s}_"): t[c] for c in trials if c.startswith(f"seed{s}_")}
            rows.append({"dataset": dataset, "method": t["params_method"], "seed": s, **values})
    return pd.DataFrame(rows)


PAPER_QUESTION = {"flat": ["nll", "nfe"], "image": ["bpd", "fid", "nfe"]}
"""The metrics of the one-line answer: the likelihood, FID for images, and sampling cost."""


def ot_against_vp(metrics: pd.DataFrame, dataset: str, ot: str, vp: str) -> str:
    """The paper's question in one line: FM on the OT path (``ot``) against FM on the VP path (``vp``),
    the mean paired difference of each metric over the seeds both ran, and its paired t-test p-value
    Holm-corrected over the line's metrics."""
    df = metrics[metrics.dataset == dataset]
    kind = "image" if "bpd" in df and df["bpd"].notna().any() else "flat"
    parts, raw, diffs = [], [], []
    seeds = 0
    for col in [c for c in PAPER_QUESTION[kind] if c in df]:
        by_seed = df.pivot_table(index="seed", columns="method", values=col, aggfunc="first")
        pairs = by_seed[[ot, vp]].dropna()
        seeds = max(seeds, len(pairs))
        diffs.append(float((pairs[ot] - pairs[vp]).mean()))
        raw.append(_paired(by_seed, ot, vp))
    labels = {**COLUMNS, **IMAGE_COLUMNS}
    for col, d, p in zip([c for c in PAPER_QUESTION[kind] if c in df], diffs, holm(raw), strict=True):
        verdict = (
            "no test" if p != p else ("OT lower" if d < 0 else "OT higher") if p < SIGNIFICANCE else "not significant"
        )
        parts.append(
            f"{labels[col]} {d:+.3g} (p = {p:.2g}, {verdict})" if p == p else f"{labels[col]} {d:+.3g} ({verdict})"
        )
    return (
        f"{dataset}: {ot} minus {vp}, mean over {seeds} paired seeds: " + "; ".join(parts) + "."
        " Paired t-tests, Holm-corrected over this line's metrics; lower is better for each."
    )
