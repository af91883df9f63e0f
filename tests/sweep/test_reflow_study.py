"""A study that searches the reflow round (``search_space: {reflow.round: ...}``): each trial trains its
method's model and rounds 1..k of reflowing it, and scores round k."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from fmexp.cli import main as fmexp_main
from tests.helpers import tiny_params, tiny_study, write_yaml

REFLOW_STEPS = (1, 2, 4, 8)  # the few-step budgets

LADDER = ["sample.nfe_ladder=[1,2,4,8]", "sample.fixed_solvers=[euler]", "sample.grids=[uniform]"]
"""A reflow round is scored after 1, 2, 4 and 8 Euler steps, its own and the model's it came from."""


def sweep(path: Path) -> int:
    return fmexp_main(["sweep", str(path)], prog="python -m fmexp.sweep")


def rounds_study(name: str = "rounds", **fields) -> dict:
    defaults = {
        "overrides": ["train.steps=10", "train.eval_every=5", "sample.n_samples=64", *LADDER],
        "search_space": {"reflow.round": "choice(0, 1, 2)"},
        "objectives": [{"metric": "few_step", "direction": "minimize"}],
        "sampler": {"name": "grid", "seed": 0},
        "n_trials": 3,
    }
    return tiny_study(name, **{**defaults, **fields})


@pytest.fixture
def small_couples(workdir: Path) -> Path:
    params = tiny_params()
    params["reflow"]["n_pairs"] = 128
    return write_yaml(workdir / "params.yaml", params)


def test_a_study_searches_the_reflow_round(workdir: Path, small_couples: Path) -> None:
    """Rounds 0, 1 and 2 of FM-OT on checkerboard, one trial each. Each trial trains its own chain from the
    same seed, so the chains agree: round 2's trial scores its round 1 (``before_``) exactly as round 1's
    trial scored its own (the same weights, the same noise for straightness and the Euler rungs), and
    every trial's base model is the same to the bit."""
    path = write_yaml(workdir / "studies" / "rounds.yaml", rounds_study())
    assert sweep(path) == 0
    folder = workdir / "reports" / "sweeps" / "rounds"
    trials = pd.read_csv(folder / "trials.csv").set_index("params_reflow.round")
    assert sorted(trials.index) == [0, 1, 2] and (trials.state == "COMPLETE").all()
    assert trials.loc[0, ["straightness", "couples_nfe"]].isna().all()  # round 0 is the model itself
    one, two = trials.loc[1], trials.loc[2]
    assert two.before_straightness == one.straightness
    assert [two[f"before_w2_euler_{k}"] for k in REFLOW_STEPS] == [one[f"w2_euler_{k}"] for k in REFLOW_STEPS]
    base = {k: folder / "trials" / f"{int(trials.loc[k, 'number']):04d}" for k in (0, 1, 2)}
    assert sorted(p.name for p in base[2].iterdir()) == ["fm_ot", "fm_ot_reflow1", "fm_ot_reflow2"]
    weights = [torch.load(base[k] / "fm_ot" / "train" / "0" / "model.pt", weights_only=True) for k in (0, 1, 2)]
    for w in weights[1:]:
        assert all(torch.equal(w["ema_weights"][n], weights[0]["ema_weights"][n]) for n in w["ema_weights"])
    couples = torch.load(base[2] / "fm_ot_reflow2" / "reflow" / "0" / "pairs.pt", weights_only=True)
    assert couples["x_0"].shape == (128, 2)


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {"method": "sm_vp", "search_space": {"reflow.round": "choice(0, 1)"}},
            r"search_space\.reflow\.round: 'checkerboard/sm_vp': reflow needs a flow-matching model",
        ),
        ({"search_space": {"reflow.round": "choice(-1, 1)"}}, r"reflow\.round: .*whole number from 0.*\[-1, 1\]"),
        ({"search_space": {"reflow.round": "choice(0, 1.5)"}}, r"reflow\.round: .*whole number"),
        (
            {"overrides": ["train.steps=10", "sample.nfe_ladder=[4,8]"]},  # wins over reflow.overrides' ladder
            r"search_space\.reflow\.round: .*a reflow round is scored after \[1, 2, 4, 8\] Euler steps",
        ),
        (  # a round's metric, where round 0 (no round) is a trial too
            {"objectives": [{"metric": "straightness", "direction": "minimize"}]},
            r"objectives\[0\]\.metric: 'straightness' is not one of",
        ),
    ],
)
def test_a_bad_reflow_round_study_exits_2(workdir: Path, small_couples: Path, capsys, fields, expected: str) -> None:
    path = write_yaml(workdir / "studies" / "bad.yaml", rounds_study("bad", **fields))
    assert sweep(path) == 2
    err = capsys.readouterr().err
    assert str(path) in err and pd.Series([err]).str.contains(expected, regex=True).item(), err
    assert not (workdir / "reports").exists()


def test_a_rounds_only_study_may_optimize_a_rounds_metric(workdir: Path, small_couples: Path) -> None:
    """Where every trial is a round (1 or 2), straightness and the Euler W2 are objectives."""
    from fmexp.sweep.study import load_study

    study = rounds_study(search_space={"reflow.round": "range(1, 3)"}, n_trials=2)
    study["objectives"] = [{"metric": "straightness", "direction": "minimize"}]
    loaded = load_study(write_yaml(workdir / "s.yaml", study))
    assert [r.method_name for r in loaded.rounds["fm_ot"]] == ["fm_ot_reflow1", "fm_ot_reflow2"]
    chain = loaded.runs({"reflow.round": 1}, "t")
    assert [r.method_name for r in chain] == ["fm_ot", "fm_ot_reflow1"] and chain[1].train.steps == 10
