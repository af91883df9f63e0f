"""Pairs (``pairs.<name>``, data-to-data flows): bad input exits 2 before any work, naming the key; a
pair's runs go end to end through the stages and the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fmexp.config.load import load_params, run_for
from fmexp.data.datasets import load_pair
from fmexp.errors import ConfigError
from tests.helpers import tiny_params, write_yaml

PAIR_METHODS = ["icfm", "otcfm", "sbcfm"]


def pair_params(**edits: object) -> dict:
    """Tiny params with the shipped pair and its three methods, in seconds."""
    p = tiny_params(datasets=["moons_8gaussians"], methods=["fm_ot"], seeds=[0, 1])
    p["pipeline"]["methods_by_dataset"] = {"moons_8gaussians": PAIR_METHODS}
    p["pairs"]["moons_8gaussians"]["n_test"] = 300
    p["sample"].update(nfe_ladder=[1, 2, 4], n_samples=300, grids=["uniform"])  # a bridge has no EDM grid
    p["score"].update(n_points=100)
    p["train"].update(val_batch=64)
    for key, value in edits.items():
        section, _, leaf = key.partition("__")
        p[section][leaf] = value
    return p


def cube(n: int, rng: np.random.Generator) -> np.ndarray:
    """A 3-D dataset, for the dimension check."""
    return rng.standard_normal((n, 3))


def _load(tmp_path: Path, p: dict):
    return load_params(write_yaml(tmp_path / "params.yaml", p))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda p: p["pairs"].update(bad={"source": "digits", "target": "8gaussians_tcfm"}),
            r"pairs\.bad\.source: 'digits' is an image dataset; a pair joins flat datasets",
        ),
        (
            lambda p: p["pairs"].update(checkerboard={"source": "moons", "target": "circles"}),
            r"pairs\.checkerboard: 'checkerboard' is a dataset's name",
        ),
        (
            lambda p: p["pairs"].update(bad={"source": "moon", "target": "circles"}),
            r"pairs\.bad\.source: 'moon' is not one of .*did you mean 'moons'",
        ),
        (
            lambda p: p["pipeline"]["methods_by_dataset"].update(moons_8gaussians=["icfm", "fm_vp"]),
            r"pipeline: cell moons_8gaussians/fm_vp: methods\.fm_vp: VPPath.* does not start at the source"
            r".*\(pairs\.moons_8gaussians flows from data\)",
        ),
        (
            lambda p: p["pipeline"]["methods_by_dataset"].update(moons_8gaussians=["sm_vp"]),
            r"methods\.sm_vp: objective 'sm' needs the Gaussian source N\(0, I\); a data source needs objective fm",
        ),
        (
            lambda p: p["sample"].update(nfe_ladder=[2, 4]),
            r"a pair \(moons_8gaussians\) is scored after \[1, 2, 4\] Euler steps",
        ),
        (
            lambda p: p["sample"].update(n_samples=301),
            r"sample\.n_samples: .* at most pairs\.moons_8gaussians\.n_test = 300, got 301",
        ),
    ],
)
def test_bad_pairs_name_the_key(tmp_path: Path, edit, expected: str) -> None:
    p = pair_params()
    edit(p)
    with pytest.raises(ConfigError, match=expected):
        _load(tmp_path, p)


def test_a_pair_of_unlike_dimensions_is_refused_where_it_is_drawn() -> None:
    with pytest.raises(ConfigError, match=r"pairs\.p: the source cube has dimension 3, the target moons_tcfm 2"):
        load_pair("p", "cube", "moons_tcfm", 100, 50, specs={"cube": {"_target_": f"{__name__}.cube"}})


def test_the_pair_is_drawn_from_both_datasets() -> None:
    """Its target splits are the target's own draw and its source the source's, from streams spawned apart."""
    pair = load_pair("p", "moons_tcfm", "8gaussians_tcfm", 400, 100, seed=0)
    assert pair.source is not None and pair.source.name == "moons_tcfm"
    assert pair.train.shape == pair.source.train.shape == (400, 2) and pair.test.shape == (100, 2)
    # torchcfm's 8 Gaussians: E[x^2] per coordinate = 25/2 (centres) + sqrt(0.1) (the covariance it passes)
    big = load_pair("p", "moons_tcfm", "8gaussians_tcfm", 50_000, 10, seed=1)
    assert float(big.train.pow(2).mean()) == pytest.approx(12.5 + 0.1**0.5, rel=0.03)


def test_sm_on_a_pair_exits_2_and_writes_nothing(workdir: Path) -> None:
    """A stage asked for a method the pair cannot run fails on the config, before it reads the data."""
    import subprocess

    write_yaml(workdir / "params.yaml", pair_params())
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp", "train", "--dataset", "moons_8gaussians", "--method", "sm_vp"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cell moons_8gaussians/sm_vp: methods.sm_vp: objective 'sm' needs the Gaussian source" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_pair_runs_through_the_stages_and_the_report(tmp_path: Path) -> None:
    """prepare, train, sample, score and report for the pair's three methods: each seed's metrics are the
    pair's (no NLL), the report has the pair's table and Tong et al.'s ordering line."""
    from fmexp.pipeline.stages.aggregate import run_stage
    from fmexp.pipeline.stages.prepare import prepare
    from fmexp.report.page import build_report

    params = _load(tmp_path, pair_params())
    data_dir, runs_dir = tmp_path / "data", tmp_path / "runs"
    prepare(params, data_dir)
    prepared = torch.load(data_dir / "moons_8gaussians.pt", weights_only=False)
    assert prepared["source"]["test"].shape == (300, 2) and prepared["w2_source_target"] > 0
    for method in PAIR_METHODS:
        for stage in ("train", "sample", "score"):
            run_stage(stage, params, "moons_8gaussians", method, data_dir=data_dir, runs_dir=runs_dir)
    metrics = json.loads((runs_dir / "moons_8gaussians" / "otcfm" / "score" / "0" / "metrics.json").read_text())
    assert {"w2", "w2_euler_1", "w2_euler_2", "w2_euler_4", "npe", "nfe"} <= set(metrics) and "nll" not in metrics
    assert metrics["w2_source_target"] == pytest.approx(prepared["w2_source_target"])
    assert metrics["w2_euler_1"] > 0 and metrics["npe"] >= 0
    curve = (runs_dir / "moons_8gaussians" / "icfm" / "curve.csv").read_text().splitlines()[0]
    assert "nfe" in curve and "nll" not in curve
    build_report(params, tmp_path / "params.yaml", runs_dir=runs_dir, reports_dir=tmp_path / "reports")
    results = (tmp_path / "reports" / "tables" / "results.md").read_text()
    assert "## moons_8gaussians" in results and "| W2 (1 Euler)" in results
    assert "**Tong et al.'s ordering (OT-CFM straighter than I-CFM).** moons_8gaussians: otcfm minus icfm" in results
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["pairs"]["moons_8gaussians"]["n_test"] == 300
    assert run_for(params, "moons_8gaussians", "sbcfm", 0).pair is not None


def test_the_edm_grid_on_a_bridge_exits_2_naming_the_key(tmp_path: Path) -> None:
    """EDM's grid needs a Gaussian path's noise-to-signal ratio: a pair's bridge has none, before any work."""
    p = pair_params()
    p["sample"]["grids"] = ["uniform", "edm"]
    path = write_yaml(tmp_path / "params.yaml", p)
    with pytest.raises(ConfigError, match=r"sample\.grids: 'edm' does not fit method 'icfm'.*ConstantBridge has none"):
        run_for(load_params(path), "moons_8gaussians", "icfm", 0)
