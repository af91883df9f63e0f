"""A base-section change that per_dataset shadows is reported, never silently ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmexp.config.load import load_params, run_for
from fmexp.config.shadow import shadowed
from tests.helpers import tiny_params, write_yaml


def test_a_base_change_that_per_dataset_shadows_is_found_and_named(tmp_path: Path) -> None:
    p = tiny_params(datasets=["checkerboard", "8gaussians"])
    p["per_dataset"]["8gaussians"] = ["train.steps=30"]
    baseline = load_params(write_yaml(tmp_path / "base.yaml", p))
    p["train"]["steps"], p["train"]["lr"] = 300, 1e-3  # two base changes; per_dataset shadows one
    params = load_params(write_yaml(tmp_path / "params.yaml", p))
    (found,) = shadowed(params, baseline, params.pipeline.datasets)
    assert (found.runs, found.key, found.base, found.in_effect) == ("8gaussians", "train.steps", 300, 30)
    assert "train.steps=300 does not apply to 8gaussians: per_dataset.8gaussians sets train.steps=30" in str(found)
    assert run_for(params, "8gaussians", "fm_ot", 0).train.steps == 30  # what the warning says is in effect
    assert shadowed(params, params, params.pipeline.datasets) == []  # nothing changed: nothing to say


def test_a_base_change_that_a_methods_overrides_shadow_is_named_with_the_method(tmp_path: Path) -> None:
    p = tiny_params(datasets=["checkerboard"])
    p["methods"]["fm_ot"]["overrides"] = {"checkerboard": ["train.lr=2e-3"]}
    baseline = load_params(write_yaml(tmp_path / "base.yaml", p))
    p["train"]["lr"] = 1e-2
    params = load_params(write_yaml(tmp_path / "params.yaml", p))
    (found,) = shadowed(params, baseline, ["checkerboard"])
    assert str(found).startswith(
        "train.lr=0.01 does not apply to fm_ot on checkerboard:"
        " methods.fm_ot.overrides.checkerboard sets train.lr=0.002"
    )


@pytest.mark.e2e
def test_commands_warn_of_a_shadowed_change_since_the_last_commit(tmp_path: Path) -> None:
    """`dvc exp run -S train.steps=300` edits params.yaml; the commands compare it with git's HEAD."""
    p = tiny_params(datasets=["8gaussians"])
    p["per_dataset"]["8gaussians"] = ["train.steps=30"]
    write_yaml(tmp_path / "params.yaml", p)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "baseline"]):
        subprocess.run([*git, *args], cwd=tmp_path, check=True)
    config = [sys.executable, "-m", "fmexp", "config"]
    quiet = subprocess.run(config, cwd=tmp_path, capture_output=True, text=True)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr  # the committed params: nothing shadowed changed
    p["train"]["steps"] = 300
    write_yaml(tmp_path / "params.yaml", p)
    loud = subprocess.run(config, cwd=tmp_path, capture_output=True, text=True)
    assert loud.returncode == 0
    assert loud.stderr.startswith("warning: params.yaml: train.steps=300 does not apply to 8gaussians"), loud.stderr
    cli_wins = subprocess.run([*config, "train.steps=300"], cwd=tmp_path, capture_output=True, text=True)
    assert "warning" not in cli_wins.stderr  # a command-line override wins over per_dataset: nothing shadowed
