"""Reflow rounds through the stages: the couples are the previous flow's dopri5 samples of noise that the
sample stage never draws, a round starts from the previous flow's weights, and bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fmexp.cli import main
from fmexp.config.load import load_params, run_for
from fmexp.config.plan import Streams
from fmexp.errors import ConfigError
from fmexp.flow.ode import chunks, integrate
from fmexp.pipeline.layout import RunFiles
from fmexp.pipeline.stages.aggregate import run_stage
from fmexp.pipeline.stages.prepare import prepare
from fmexp.runtime import artifacts
from fmexp.training.state import load_model
from tests.helpers import tiny_params, write_yaml


def reflow_params(**reflow: object) -> dict:
    p = tiny_params(methods=["fm_ot", "sm_vp"], seeds=[0])
    p["sample"].update(nfe_ladder=[1, 2, 4, 8], fixed_solvers=["euler"], batch_size=64)
    p["reflow"] = {"cells": ["checkerboard/fm_ot"], "rounds": 2, "n_pairs": 150, "overrides": ["train.steps=6"]}
    p["reflow"].update(reflow)
    return p


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reflow")
    params = load_params(write_yaml(root / "params.yaml", reflow_params()))
    data_dir, runs_dir = root / "data", root / "runs"
    prepare(params, data_dir)
    for method in ("fm_ot", "fm_ot_reflow1"):
        if method != "fm_ot":
            run_stage("reflow", params, "checkerboard", method, data_dir=data_dir, runs_dir=runs_dir)
        for stage in ("train", "sample", "score"):
            run_stage(stage, params, "checkerboard", method, data_dir=data_dir, runs_dir=runs_dir)
    return params, runs_dir


def test_the_couples_are_the_previous_flows_dopri5_samples(pipeline) -> None:
    params, runs_dir = pipeline
    run = run_for(params, "checkerboard", "fm_ot_reflow1", 0)
    files = RunFiles.of(runs_dir, run)
    couples = artifacts.load_torch(files.couples)
    assert couples["x_0"].shape == couples["x_1"].shape == (150, 2)
    v = load_model(files.sibling("fm_ot").model)  # FM on OT: the field is the network
    tol = run.sample.tolerances
    with torch.no_grad():
        ends = [integrate(v, couples["x_0"][part], **tol).x for part in chunks(150, 64)]
    torch.testing.assert_close(couples["x_1"], torch.cat(ends), rtol=0, atol=0)
    seed = Streams.of(0)
    assert torch.equal(couples["x_0"], torch.randn(150, 2, generator=torch.Generator().manual_seed(seed.reflow)))
    assert seed.reflow not in (seed.sampling, seed.training, seed.scoring, seed.curve)  # never the sample stage's


def test_a_round_starts_from_the_previous_weights(tmp_path: Path, pipeline) -> None:
    """With a learning rate of 1e-30 the round's weights stay where they started: the previous flow's."""
    params, runs_dir = pipeline
    p = reflow_params(overrides=["train.steps=2", "train.lr=1e-30", "train.warmup_steps=0"])
    still = load_params(write_yaml(tmp_path / "params.yaml", p))
    run = run_for(still, "checkerboard", "fm_ot_reflow1", 0)
    assert run.train.lr == 1e-30 and run.method.sigma_min == 0.0 and run.reflow.previous == "fm_ot"
    from fmexp.pipeline.layout import load_prepared
    from fmexp.pipeline.stages.train import train_run

    files = RunFiles.of(runs_dir, run)
    out = RunFiles(tmp_path / "runs" / "checkerboard" / "fm_ot_reflow1", 0)
    out.couples.parent.mkdir(parents=True)
    out.couples.write_bytes(files.couples.read_bytes())
    (tmp_path / "runs" / "checkerboard" / "fm_ot").mkdir(parents=True)
    (tmp_path / "runs" / "checkerboard" / "fm_ot" / "train").symlink_to(files.sibling("fm_ot").model.parent.parent)
    train_run(run, load_prepared(runs_dir.parent / "data", "checkerboard"), out, progress=False)
    before, after = load_model(files.sibling("fm_ot").model), load_model(out.model)
    for a, b in zip(before.state_dict().values(), after.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_round_is_scored_against_the_flow_it_came_from(pipeline) -> None:
    params, runs_dir = pipeline
    seed0 = artifacts.read_json(RunFiles(runs_dir / "checkerboard" / "fm_ot_reflow1", 0).metrics)
    base = artifacts.read_json(RunFiles(runs_dir / "checkerboard" / "fm_ot", 0).sample_info)
    assert seed0["before_nfe"] == base["nfe"] and seed0["couples_nfe"] > 0
    assert all(f"before_w2_euler_{k}" in seed0 and f"w2_to_before_euler_{k}" in seed0 for k in (1, 2, 4, 8))
    assert seed0["straightness"] >= 0 and seed0["before_straightness"] >= 0


@pytest.mark.parametrize(
    ("edit", "command", "expected"),
    [
        (
            {"cells": ["checkerboard/sm_vp"]},
            None,
            r"reflow\.cells: 'checkerboard/sm_vp': reflow needs a flow-matching model \(objective fm\)",
        ),
        ({"rounds": 0}, None, r"reflow\.rounds: must be a positive"),
        ({}, "fm_ot_reflow3", r"'fm_ot_reflow3' is round 3 of reflowing checkerboard/fm_ot, which does not exist"),
        ({"overrides": ["pipeline.seeds=[1]"]}, None, r"reflow\.overrides: 'pipeline\.seeds=\[1\]' must set a key of"),
    ],
)
def test_bad_reflow_input_exits_2_naming_the_key(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, edit: dict, command: str | None, expected: str
) -> None:
    import re

    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "params.yaml", reflow_params(**edit))
    before = sorted(tmp_path.rglob("*"))
    assert main(["reflow", "--dataset", "checkerboard", "--method", command or "fm_ot_reflow1"]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err), err
    assert "Traceback" not in err and sorted(tmp_path.rglob("*")) == before


def test_the_rounds_need_the_euler_rungs_that_score_them(tmp_path: Path) -> None:
    p = reflow_params()
    p["sample"]["nfe_ladder"] = [4, 8]
    with pytest.raises(ConfigError, match=r"cell checkerboard/fm_ot_reflow1: sample: a reflow round is scored after"):
        load_params(write_yaml(tmp_path / "params.yaml", p))
