"""The report's tables: bold only where Welch's t-test separates the best mean from every other method."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy.stats import t as student_t

from fmexp.report.page import method_table, welch_p


def test_welch_p_matches_the_formula() -> None:
    """a = (1, 2, 3), b = (4, 5, 6): both variances 1, so t = -3 / sqrt(2/3) and the Welch-Satterthwaite
    degrees of freedom are (2/3)^2 / (2 (1/3)^2 / 2) = 4."""
    t = 3 / math.sqrt(2 / 3)
    assert welch_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(2 * student_t.sf(t, 4), rel=1e-9)
    assert math.isnan(welch_p([1.0], [2.0, 3.0]))  # one seed: no test


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
        frame({"a": [1.0, 1.1, 1.2], "b": [3.0, 3.1, 3.2], "c": [2.0, 2.1, 2.2]}), "d", ["a", "b", "c"]
    )
    assert display.loc["a", "NLL (nats)"].startswith("**") and not display.loc["c", "NLL (nats)"].startswith("**")
    assert math.isnan(stats.loc["a", "nll_p"]) and stats.loc["c", "nll_p"] < 0.05
    assert not any(cell.startswith("**") for cell in display["NFE"])  # equal NFE everywhere: p = 1 (or NaN), no win
    # a within the seed noise of c: the best mean is not bold
    _, display = method_table(frame({"a": [1.0, 2.0, 3.0], "c": [1.5, 2.5, 3.5]}), "d", ["a", "c"])
    assert not any(cell.startswith("**") for cell in display["NLL (nats)"])


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
