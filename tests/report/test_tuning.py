"""Each method at its best: the settings a tuning study's trials choose, per method and shared."""

from __future__ import annotations

import pandas as pd
import pytest

from fmexp.report.tuning import tuned_settings


def trials(rows: list[tuple[str, float, str, float]], **extra: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["params_method", "params_train.lr", "params_train.time_sampler", "fid"])
    frame["state"] = extra.get("state", ["COMPLETE"] * len(rows))
    frame["superseded"] = extra.get("superseded", [False] * len(rows))
    return frame


GRID = [  # method, lr, time sampler, objective
    ("a", 1e-3, "uniform", 3.0),
    ("a", 2e-3, "uniform", 2.0),
    ("a", 1e-3, "logit_normal", 1.0),
    ("a", 2e-3, "logit_normal", 4.0),
    ("b", 1e-3, "uniform", 1.0),
    ("b", 2e-3, "uniform", 1.5),
    ("b", 1e-3, "logit_normal", 2.6),
    ("b", 2e-3, "logit_normal", 2.5),
]


def test_each_method_takes_its_own_best_where_nothing_is_shared() -> None:
    assert tuned_settings(trials(GRID), "fid", "minimize", []) == {
        "a": {"train.lr": 1e-3, "train.time_sampler": "logit_normal"},  # 1.0
        "b": {"train.lr": 1e-3, "train.time_sampler": "uniform"},  # 1.0
    }


def test_a_shared_key_takes_the_value_with_the_best_mean_over_methods_at_their_best() -> None:
    """uniform: a's best 2.0, b's 1.0, mean 1.5; logit_normal: 1.0 and 2.5, mean 1.75. Uniform wins,
    though each method alone would differ; then each method's best lr under uniform."""
    assert tuned_settings(trials(GRID), "fid", "minimize", ["train.time_sampler"]) == {
        "a": {"train.lr": 2e-3, "train.time_sampler": "uniform"},
        "b": {"train.lr": 1e-3, "train.time_sampler": "uniform"},
    }


def test_maximize_and_trials_that_do_not_count() -> None:
    state = ["COMPLETE"] * 7 + ["FAIL"]
    superseded = [False, True] + [False] * 6
    chosen = tuned_settings(trials(GRID, state=state, superseded=superseded), "fid", "maximize", [])
    assert chosen["a"] == {"train.lr": 2e-3, "train.time_sampler": "logit_normal"}  # 4.0
    assert chosen["b"] == {"train.lr": 1e-3, "train.time_sampler": "logit_normal"}  # 2.6; the failed 2.5 is no trial


def test_a_shared_value_that_not_every_method_ran_is_not_chosen() -> None:
    rows = [r for r in GRID if not (r[0] == "b" and r[2] == "uniform")]
    chosen = tuned_settings(trials(rows), "fid", "minimize", ["train.time_sampler"])
    assert {c["train.time_sampler"] for c in chosen.values()} == {"logit_normal"}
    with pytest.raises(ValueError, match="run with every method"):
        tuned_settings(trials([GRID[0], GRID[6]]), "fid", "minimize", ["train.time_sampler"])
