"""The prose beside the report's tables: what each table's numbers are (the notes), and the one-line
answer to the paper's question (FM on the OT path against FM on VP; on a pair, the minibatch-OT
coupling against the independent one)."""

from __future__ import annotations

import pandas as pd

from fmexp.config.load import run_for
from fmexp.config.schema import Params
from fmexp.registry import target
from fmexp.report.tables import couplings_compared, ot_against_vp

__all__ = [
    "GUIDANCE_NOTE",
    "REFLOW_NOTE",
    "SAMPLERS_NOTE",
    "SIGNIFICANCE_NOTE",
    "pair_note",
    "paper_question",
    "entropy_note",
    "image_note",
]

GUIDANCE_NOTE = (
    "Class-conditional flows sampled at each guidance scale w, v_w = (1 + w) v(x, t, y) - w v(x, t, null)"
    " (Ho and Salimans 2022; docs/guidance.md), from the same noise and requested labels (in the training split's"
    " class proportions): FID against the whole training split, and the digits classifier's accuracy against the"
    " requested labels. NFE counts field evaluations; at w != 0 each is one network call on the conditional and"
    " null rows stacked (2 rows per sample). Bold: different from w = 0 by the paired t-test across seeds,"
    " p < 0.05 (`reports/tables/guidance.csv`, with the accuracy per class in `runs/<d>/<m>/score/guidance.csv`)."
)

REFLOW_NOTE = (
    "Each reflow round (Liu et al. 2022; docs/reflow.md) against the flow it came from, on the same seeds:"
    " exact W2 of Euler samples to held-out data at 1, 2, 4 and 8 steps from the same noise, dopri5's NFE and"
    " the straightness along dopri5 trajectories (0 for straight paths at constant speed). Bold: the better"
    " side where the paired t-test across seeds gives p < 0.05 (`reports/tables/reflow.csv`)."
)

SAMPLERS_NOTE = (
    "Which fixed-step solver and time grid (uniform, or EDM's: docs/samplers.md) gives the best samples at a few"
    " field evaluations per path (NFE; heun2 and midpoint take 2 a step, rk4 4): the best mean over seeds against"
    " the runner-up by the paired t-test across seeds, bold where p < 0.05 (`reports/tables/samplers.csv`)."
)

SIGNIFICANCE_NOTE = (
    " Bold: the best mean (chosen from the data) where a paired t-test across seeds, Holm-corrected over the"
    " comparisons with the other methods, gives p < 0.05 for each."
)


def pair_note(params: Params, dataset: str) -> str:
    """What a pair's table shows, and what it may be compared with."""
    pair = params.pairs[dataset]
    run = run_for(params, dataset, params.methods_of(dataset)[0], params.pipeline.seeds[0])
    return (
        f"{pair.source} -> {pair.target} (a data-to-data flow, Tong et al. 2023). W2: exact (POT's network"
        f" simplex), between the {run.sample.n_samples} dopri5 samples from the source's held-out points and the"
        f" target's {pair.n_test} held-out points; W2 (k Euler): the same starts after k Euler steps; NPE:"
        " |PE - W2^2(q_0, q_1)| / W2^2(q_0, q_1), PE the mean of int_0^1 ||v||^2 dt along dopri5 trajectories from"
        f" {run.score.n_points} held-out source points, 64 times each. Compare with Tong et al.'s tables by the"
        " ordering of the methods only, where their network, steps and batch differ from these (docs/pairs.md)."
    )


def paper_question(params: Params, metrics: pd.DataFrame, dataset: str) -> str:
    """The one-line answer for ``dataset``: the first FM method on the OT path against the first on VP; on a
    pair, the first constant bridge with the minibatch-OT coupling against the first with the independent."""
    ran = set(metrics[metrics.dataset == dataset].method)
    if dataset in params.pairs:
        otcfm, icfm = (
            next((m for m in params.methods_of(dataset) if m in ran and _is_bridge(params, m, c)), None)
            for c in ("ot", "independent")
        )
        return couplings_compared(metrics, dataset, otcfm, icfm) if otcfm and icfm else ""
    ot, vp = (
        next((m for m in params.methods_of(dataset) if m in ran and _is(params, m, path)), None)
        for path in ("ot", "vp")
    )
    return ot_against_vp(metrics, dataset, ot, vp) if ot and vp else ""


def _is_bridge(params: Params, method: str, coupling: str) -> bool:
    m = params.method_config(method)
    return target("path", m.path)[0] == "fmexp.flow.bridges.ConstantBridge" and m.coupling == coupling


def _is(params: Params, method: str, path: str) -> bool:
    m = params.method_config(method)
    return m.objective == "fm" and m.path == path and m.coupling == "independent"


def entropy_note(dataset: str, rows: pd.DataFrame) -> str:
    """The floors of the NLL, where the data's density has a closed form: the cross-entropy of the very
    held-out points scored under the true density (``nll_floor``), and the population entropy."""
    from fmexp.data.toy import LOG_DENSITIES, entropy

    if dataset not in LOG_DENSITIES:
        return ""
    h, se = entropy(dataset)
    how = "exactly" if se == 0 else f"± {se:.3f}, Monte Carlo over 10^6 points of its closed-form density"
    floor = (
        f" The floor for these held-out points, their cross-entropy under the true density, is"
        f" {rows.nll_floor.iloc[0]:.3f} nats; no model's NLL of them can be lower on average."
        if "nll_floor" in rows and rows.nll_floor.notna().any()
        else ""
    )
    return f"{floor} The data's entropy, the floor over all draws of the points, is {h:.3f} nats ({how})."


def image_note(rows: pd.DataFrame) -> str:
    """What an image table's numbers are: FID over all samples, and beside it the floor and the samples at
    equal n, their noise and both extrapolated in 1/n (``fmexp.flow.metrics.fid_scores``)."""
    backend = rows.fid_backend.dropna().iloc[0]
    se = rows.groupby("method").bpd_se.mean()
    note = (
        f"NLL in bits/dim of the held-out images (Hutchinson divergence, uniform dequantization; the standard error"
        f" over images is {se.min():.3f} to {se.max():.3f}), FID with the {backend} features of all"
        f" {int(rows.fid_n.iloc[0])} dopri5 samples of a seed, as uint8, against the statistics of the whole"
        f" training split (the standard protocol). FID's bias falls as 1/n, so figures compare only at equal n."
    )
    if "fid_floor" in rows:
        n = int(rows.fid_floor_n.iloc[0])
        note += (
            f" At n = {n}: {n} real held-out images score FID {rows.fid_floor.mean():.1f} (the floor; its noise,"
            f" over subsets of {int(rows.fid_floor_std_n.iloc[0])} of them, is {rows.fid_floor_std.mean():.1f}),"
            f" and the models' draws of {n} samples score {_range(rows.groupby('method').fid_equal_n.mean())}"
            f" (their spread between draws: {rows.fid_draw_std.mean():.1f})."
        )
    if "fid_inf" in rows and rows.fid_floor_inf.notna().any():
        note += (
            f" Extrapolated to infinite n (FID∞, Chong and Forsyth 2020): the floor {rows.fid_floor_inf.mean():.1f},"
            f" the models {_range(rows.groupby('method').fid_inf.mean())}."
        )
    if "fid_classifier_accuracy" in rows:
        note += f" The classifier's test accuracy is {rows.fid_classifier_accuracy.iloc[0]:.1%}."
    return note


def _range(values: pd.Series) -> str:
    return f"{values.min():.1f} to {values.max():.1f}" if len(values) > 1 else f"{values.iloc[0]:.1f}"
