"""The significance tests of the report's tables: paired t-tests across seeds, Holm-corrected.

Methods run with the same seed share their training batches, their noise draws and their held-out
points, so their scores are paired by seed, and the test is on the per-seed differences (Student's
paired t-test, ``scipy.stats.ttest_rel``, two-sided). The best method of a column is chosen from the
data and then compared with each of the k - 1 others: Holm's step-down correction (Holm 1979) keeps the
chance of any false "better" at the level over those k - 1 tests.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIGNIFICANCE", "paired_p", "holm"]

SIGNIFICANCE = 0.05


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test that ``a`` and ``b`` (scores by seed, the same seeds in the
    same order) have equal means; NaN where fewer than two pairs, or where the differences do not vary
    (an NFE that differs by the same count on every seed): no variance, no test."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"a paired test needs the same seeds on both sides, got {len(a)} and {len(b)} values")
    d = a - b
    if len(d) < 2 or np.ptp(d) == 0:
        return float("nan")
    return float(ttest_rel(a, b).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the i-th smallest of m is multiplied by m - i + 1
    (i from 1), made non-decreasing in that order, and capped at 1. NaN stays NaN and does not count
    among the m tests."""
    p = np.asarray(p_values, float)
    tested = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), np.nan)
    m = len(tested)
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]
