"""The report's tables: bold only where a paired, Holm-corrected t-test separates the best mean from
every other method."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from fmexp.report.stats import holm, paired_p
from fmexp.report.tables import method_table


def test_paired_p_matches_the_formula() -> None:
    """Differences d = (1, 2, 4): mean 7/3, variance 7/3, so t = (7/3) / sqrt(7/9) = sqrt(7) on 2 degrees
    of freedom."""
    assert paired_p([1.0, 2.0, 4.0], [0.0, 0.0, 0.0]) == pytest.approx(2 * student_t.sf(math.sqrt(7), 2), rel=1e-9)
    assert math.isnan(paired_p([1.0], [2.0]))  # one seed: no test
    assert math.isnan(paired_p([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]))  # the same difference on every seed: no variance
    with pytest.raises(ValueError, match="same seeds"):
        paired_p([1.0, 2.0], [1.0, 2.0, 3.0])


def test_holm_matches_a_worked_example() -> None:
    """p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted, times 4, 3, 2, 1 is 0.02, 0.03, 0.06, 0.04; made
    non-decreasing, 0.02, 0.03, 0.06, 0.06; back in the given order. NaN is no test and leaves m = 2."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], rel=1e-12)
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    adjusted = holm([float("nan"), 0.01, 0.04])
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.02, 0.04], rel=1e-12)


def frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"dataset": "d", "method": m, "seed": i, "nll": v, "distance": v, "nfe": 10.0 * (i + 1)}
            for m, vs in values.items()
            for i, v in enumerate(vs)
        ]
    )


def test_bold_only_where_the_difference_is_significant() -> None:
    stats, display = method_table(
        frame({"a": [1.0, 1.1, 1.2], "b": [3.0, 3.3, 3.1], "c": [2.0, 2.2, 2.1]}), "d", ["a", "b", "c"]
    )
    assert display.loc["a", "NLL (nats)"].startswith("**") and not display.loc["c", "NLL (nats)"].startswith("**")
    assert math.isnan(stats.loc["a", "nll_p"]) and stats.loc["c", "nll_p_holm"] < 0.05
    assert not any(cell.startswith("**") for cell in display["NFE"])  # equal NFE everywhere: no test, no win


def test_the_pairing_by_seed_is_what_separates_methods() -> None:
    """c is a plus 0.1 on every seed, give or take 0.02, while the seeds spread by 1: Welch's unpaired test
    sees nothing (p = 0.91), the paired test sees the consistent difference (p = 0.007)."""
    a = np.array([1.0, 2.0, 3.0])
    stats, display = method_table(frame({"a": list(a), "c": list(a + [0.1, 0.12, 0.09])}), "d", ["a", "c"])
    assert stats.loc["c", "nll_p"] == pytest.approx(0.0072, abs=1e-4)
    assert display.loc["a", "NLL (nats)"].startswith("**")


def test_holm_withholds_the_bold_that_three_raw_p_values_would_give() -> None:
    """Three comparisons at raw p = 0.026, 0.024 and 0.034: each below 0.05 alone, none after Holm
    (the smallest times 3 is 0.071)."""
    a = np.array([1.0, 2.0, 3.0])
    offsets = {"b": [0.5, 0.9, 0.7], "c": [0.6, 1.0, 0.7], "e": [0.4, 0.8, 0.7]}
    stats, display = method_table(
        frame({"a": list(a), **{m: list(a + d) for m, d in offsets.items()}}), "d", ["a", "b", "c", "e"]
    )
    assert (stats.loc[["b", "c", "e"], "nll_p"] < 0.05).all()
    assert (stats.loc[["b", "c", "e"], "nll_p_holm"] >= 0.05).all()
    assert not display.loc["a", "NLL (nats)"].startswith("**")


def test_user_strings_in_the_report_are_escaped(tmp_path, monkeypatch) -> None:
    """A study's folder name, a param value and best.yaml's strings holding <script> reach the page as
    text, never as markup."""
    import yaml

    from fmexp.config.load import load_params
    from fmexp.report.page import build_report
    from tests.helpers import tiny_params, write_yaml

    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "params.yaml", tiny_params())
    evil = "<script>alert(1)</script>"
    folder = tmp_path / "reports" / "sweeps" / "x<script>"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"number": [0, 1], "state": ["COMPLETE", "COMPLETE"], "params_method.path": [evil, "ot"], "nll": [1.0, 2.0]}
    ).to_csv(folder / "trials.csv", index=False)
    (folder / "best.yaml").write_text(
        yaml.safe_dump(
            {
                "study": evil,
                "objectives": [{"metric": "nll", "direction": "minimize"}],
                "best": {"number": 0, "params": {"method.path": evil}},
            }
        )
    )
    page = build_report(load_params("params.yaml"), "params.yaml").read_text()
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 3  # the folder name, the table cell, best.yaml


def test_the_paper_question_in_one_line() -> None:
    """OT's NLL is VP's minus 0.1, 0.12, 0.09 on the three seeds (paired p = 0.0072, above); its NFE is 40,
    40, 39 lower. Holm over the line's two metrics doubles the smaller p-value."""
    from scipy.stats import ttest_rel

    from fmexp.report.tables import ot_against_vp

    ot_nll, vp_nll = [1.0, 2.0, 3.0], [1.1, 2.12, 3.09]
    ot_nfe, vp_nfe = [80.0, 90.0, 86.0], [120.0, 130.0, 125.0]
    rows = [
        {"dataset": "d", "method": m, "seed": s, "nll": nll[s], "nfe": nfe[s]}
        for m, nll, nfe in (("fm_ot", ot_nll, ot_nfe), ("fm_vp", vp_nll, vp_nfe))
        for s in range(3)
    ]
    line = ot_against_vp(pd.DataFrame(rows), "d", "fm_ot", "fm_vp")
    p_nll, p_nfe = ttest_rel(ot_nll, vp_nll).pvalue, ttest_rel(ot_nfe, vp_nfe).pvalue
    assert p_nfe < p_nll
    assert line.startswith("d: fm_ot minus fm_vp, mean over 3 paired seeds: NLL (nats) -0.103 (p = ")
    assert f"(p = {p_nll:.2g}, OT lower)" in line and f"NFE -39.7 (p = {2 * p_nfe:.2g}, OT lower)" in line


def test_tong_et_als_ordering_in_one_line() -> None:
    """OT-CFM's NPE is I-CFM's minus 0.5, 0.6, 0.55 on three seeds (paired p from scipy's ttest_rel, Holm
    over the line's four metrics); a W2 difference of +-0.01 alternating in sign is not significant."""
    from scipy.stats import ttest_rel

    from fmexp.report.tables import couplings_compared

    npe = {"otcfm": [0.05, 0.04, 0.06], "icfm": [0.55, 0.64, 0.61]}
    w2 = {"otcfm": [0.51, 0.49, 0.50], "icfm": [0.50, 0.50, 0.51]}
    rows = [
        {"dataset": "p", "method": m, "seed": s, "npe": npe[m][s], "w2": w2[m][s], "w2_euler_1": 1.0 + s, "nfe": 50.0}
        for m in ("otcfm", "icfm")
        for s in range(3)
    ]
    line = couplings_compared(pd.DataFrame(rows), "p", "otcfm", "icfm")
    p_npe, p_w2 = (ttest_rel(x["otcfm"], x["icfm"]).pvalue for x in (npe, w2))
    assert p_npe < p_w2  # Holm over the two tested metrics (equal columns are no test): 2 p_npe, then p_w2
    assert line.startswith("p: otcfm minus icfm, mean over 3 paired seeds: NPE -0.55 (p = ")
    assert f"NPE -0.55 (p = {2 * p_npe:.2g}, OT-CFM lower)" in line
    assert f"W2 -0.00333 (p = {max(2 * p_npe, p_w2):.2g}, not significant)" in line
    assert "W2 (1 Euler) +0 (no test)" in line
