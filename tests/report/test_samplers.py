"""The few-step sampler comparison: the winner is the lowest mean over seeds, tested against the runner-up
by the paired t-test (scipy's, as the reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel

from fmexp.report.samplers import sampler_display, sampler_summary, sampler_table


def _quality() -> pd.DataFrame:
    """Three seeds, two budgets; heun2 on EDM's grid best at 8 NFE by a margin far above the seeds' noise,
    euler on the uniform grid and heun2 on it tied at 4 NFE but for noise."""
    rows = []
    noise = {0: 0.01, 1: -0.02, 2: 0.015}
    for seed, e in noise.items():
        for solver, grid, nfe, q in [
            ("euler", "uniform", 8, 0.50),
            ("heun2", "uniform", 8, 0.30),
            ("heun2", "edm", 8, 0.10),
            ("euler", "uniform", 4, 0.80),
            ("heun2", "uniform", 4, 0.80),
            ("euler", "uniform", 32, 0.05),
        ]:
            wobble = e * (1 if solver == "euler" else -1 if nfe == 4 else 0.5 if grid == "uniform" else 0.2)
            rows.append(dict(dataset="d", method="m", seed=seed, solver=solver, grid=grid, nfe=nfe, quality=q + wobble))
    return pd.DataFrame(rows).assign(measure="sliced W2")


def test_the_winner_and_its_paired_p() -> None:
    q = _quality()
    table = sampler_table(q).set_index("nfe")
    assert list(table.index) == [8, 4]  # 32 NFE is not a reported budget
    at8 = table.loc[8]
    assert (at8.best, at8.runner_up, at8.samplers, at8.seeds) == ("heun2 (edm)", "heun2", 3, 3)
    best = q[(q.nfe == 8) & (q.grid == "edm")].sort_values("seed").quality.to_numpy()
    second = q[(q.nfe == 8) & (q.solver == "heun2") & (q.grid == "uniform")].sort_values("seed").quality.to_numpy()
    assert at8.best_mean == np.mean(best) and at8.p == ttest_rel(best, second).pvalue
    assert at8.p < 0.05 and table.loc[4].p > 0.05
    shown = sampler_display(table.reset_index()).set_index("NFE")
    assert shown.loc[8, "best"].startswith("**heun2 (edm)") and not shown.loc[4, "best"].startswith("**")
    assert "at 8 NFE the best of 1 cells: heun2 (edm) 1 (1 at p < 0.05)" in sampler_summary(table.reset_index())


def test_a_cell_with_one_sampler_at_a_budget_is_no_comparison() -> None:
    """A reflow round samples Euler only: it neither wins nor counts among the cells."""
    q = _quality()
    alone = q[q.solver == "euler"].assign(method="m_reflow1")
    table = sampler_table(pd.concat([q, alone], ignore_index=True))
    assert set(table.method) == {"m"} and len(table) == 2
    assert "at 4 NFE the best of 1 cells" in sampler_summary(table)
