"""The search space's values: what a choice, a range and an interval hold."""

from __future__ import annotations

import pytest

from fmexp.sweep.space import grid_points, points, to_distribution


@pytest.mark.parametrize(
    ("expr", "values"),
    [
        ("choice(ot, vp)", ["ot", "vp"]),
        ("range(0, 9, 3)", [0, 3, 6]),  # Python's range: the stop is left out
        ("range(1, 4)", [1, 2, 3]),
        ("range(0.5, 2.0, 0.5)", [0.5, 1.0, 1.5]),
    ],
)
def test_points_are_the_values_the_expression_holds(expr: str, values: list) -> None:
    assert points(to_distribution("k", expr, "s.yaml")) == values


def test_an_interval_holds_no_list_of_values() -> None:
    with pytest.raises(ValueError, match="interval"):
        points(to_distribution("k", "interval(0, 1)", "s.yaml"))


def test_the_grid_is_every_combination_once() -> None:
    space = {"a": to_distribution("a", "choice(x, y)", "s"), "b": to_distribution("b", "range(1, 4)", "s")}
    grid = grid_points(space, seed=0)
    assert sorted((p["a"], p["b"]) for p in grid) == [(a, b) for a in "xy" for b in (1, 2, 3)]
    assert grid == grid_points(space, seed=0) and grid != grid_points(space, seed=1)  # 6! orders; seeds differ
