"""The paper's table layout: methods by metric, mean ± std over seeds, the best mean in bold where a
paired t-test across seeds, Holm-corrected over the comparisons with the best, separates it from every
other method (``fmexp.report.stats``)."""

from __future__ import annotations

import pandas as pd

from fmexp.flow.units import table_columns
from fmexp.report.stats import SIGNIFICANCE, holm, paired_p

__all__ = ["table_kind", "method_table", "ot_against_vp", "couplings_compared"]


def table_kind(df: pd.DataFrame) -> str:
    """The kind of data the rows scored (``fmexp.flow.units.SCORED``): ``pair`` (NPE), ``image`` (bits/dim)
    or ``flat``."""
    for kind, column in (("pair", "npe"), ("image", "bpd")):
        if column in df and df[column].notna().any():
            return kind
    return "flat"


def method_table(metrics: pd.DataFrame, dataset: str, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's layout for one dataset: (numeric frame, display frame with 'mean ± std').

    The numeric frame holds each column's mean and std over seeds, ``<col>_p``: the paired t-test
    p-value of the best mean (lowest) against this method's, and ``<col>_p_holm``: that p-value
    Holm-corrected over the k - 1 comparisons of the best with the others (``fmexp.report.stats``). A
    best mean is bold only where every corrected p-value is below 0.05, so a difference within the
    seed noise is never shown as a win.
    """
    df = metrics[metrics.dataset == dataset]
    columns = {c: label for c, label in table_columns(table_kind(df)).items() if c in df}
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


PAPER_QUESTION = {
    "flat": ["nll", "nfe"],
    "image": ["bpd", "fid", "nfe"],
    "pair": ["npe", "w2_euler_1", "w2", "nfe"],
}
"""The metrics of the one-line answers: the likelihood, FID for images, and sampling cost; for a pair the
straightness (NPE, one-step W2), the W2 and the cost."""


def ot_against_vp(metrics: pd.DataFrame, dataset: str, ot: str, vp: str) -> str:
    """The paper's question in one line: FM on the OT path (``ot``) against FM on the VP path (``vp``)
    (``paired_line``)."""
    return paired_line(metrics, dataset, ot, vp, "OT")


def couplings_compared(metrics: pd.DataFrame, dataset: str, otcfm: str, icfm: str) -> str:
    """Tong et al. 2023's ordering on a pair in one line: OT-CFM (``otcfm``) against I-CFM (``icfm``), the
    same bridge with the minibatch-OT coupling against the independent one (``paired_line``)."""
    return paired_line(metrics, dataset, otcfm, icfm, "OT-CFM")


def paired_line(metrics: pd.DataFrame, dataset: str, a: str, b: str, name: str) -> str:
    """``a`` against ``b`` in one line: the mean paired difference of each metric of ``PAPER_QUESTION``
    over the seeds both ran, and its paired t-test p-value Holm-corrected over the line's metrics;
    ``name`` names ``a`` in the verdicts."""
    df = metrics[metrics.dataset == dataset]
    kind = table_kind(df)
    parts, raw, diffs = [], [], []
    seeds = 0
    cols = [c for c in PAPER_QUESTION[kind] if c in df]
    for col in cols:
        by_seed = df.pivot_table(index="seed", columns="method", values=col, aggfunc="first")
        pairs = by_seed[[a, b]].dropna()
        seeds = max(seeds, len(pairs))
        diffs.append(float((pairs[a] - pairs[b]).mean()))
        raw.append(_paired(by_seed, a, b))
    labels = table_columns(kind)
    for col, d, p in zip(cols, diffs, holm(raw), strict=True):
        verdict = (
            "no test"
            if p != p
            else (f"{name} lower" if d < 0 else f"{name} higher")
            if p < SIGNIFICANCE
            else "not significant"
        )
        parts.append(
            f"{labels[col]} {d:+.3g} (p = {p:.2g}, {verdict})" if p == p else f"{labels[col]} {d:+.3g} ({verdict})"
        )
    return (
        f"{dataset}: {a} minus {b}, mean over {seeds} paired seeds: " + "; ".join(parts) + "."
        " Paired t-tests, Holm-corrected over this line's metrics; lower is better for each."
    )
