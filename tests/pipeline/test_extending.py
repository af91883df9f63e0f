"""The example project (examples/extending): a path, a model and a dataset of a user's, named by
``_target_``, through ``dvc repro``, DVC's dependency tracking (a touched plugin, a changed argument)
and a study with two workers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import BIN, ROOT, dvc_repo, sh

EXAMPLE = ROOT / "examples" / "extending"
DECAY_CELLS = {f"{stage}-ring-fm_decay" for stage in ("train", "sample", "score")}
"""The stages of the cell whose method uses plugins/paths.py (ring/fm_ot does not)."""


def _tiny(params: dict) -> dict:
    params["train"].update(steps=60, eval_every=30, curve_points=0)
    params["pipeline"].update(datasets=["ring"], cells=["ring/fm_ot", "ring/fm_decay"], seeds=[0], workers=1)
    params["sample"].update(n_samples=200, nfe_ladder=[4], n_trajectories=0)
    params["score"].update(n_points=100, density_grid=0)
    params["data"].update(n_train=2000, n_test=300)
    return params


def _stale(repo: Path) -> set[str]:
    """The stages ``dvc status`` lists as changed."""
    status = json.loads(sh(str(BIN / "dvc"), "status", "--json", cwd=repo))
    return {name for name in status if not name.endswith(".dvc")}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example in a git + DVC repo, tiny, after ``dvc repro``."""
    root = tmp_path_factory.mktemp("extending")
    shutil.copytree(EXAMPLE / "plugins", root / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    repo = dvc_repo(root, _tiny(yaml.safe_load((EXAMPLE / "params.yaml").read_text())))
    shutil.copy(EXAMPLE / "studies" / "decay_power.yaml", repo / "studies" / "decay_power.yaml")
    sh(str(BIN / "dvc"), "repro", cwd=repo)
    return repo


@pytest.mark.slow
def test_the_example_runs_and_dvc_tracks_its_plugins(example: Path) -> None:
    for cell in ("ring/fm_ot", "ring/fm_decay"):
        metrics = json.loads((example / "runs" / cell / "metrics.json").read_text())
        assert metrics["nll"]["mean"] == metrics["nll"]["mean"]  # scored, finite
    info = json.loads((example / "runs" / "ring" / "fm_decay" / "train" / "0" / "train.json").read_text())
    assert info["plan"]["model_spec"] == {"_target_": "plugins.models.ResidualMLP", "dim": 2, "width": 64, "blocks": 2}
    assert info["plan"]["method"]["path"].startswith("PowerDecayPath(sigma_min=0.0001, p=2.0")
    assert "plugins.paths.PowerDecayPath(p=2)" in (example / "reports" / "summary.html").read_text()
    assert _stale(example) == set()

    with (example / "plugins" / "paths.py").open("a") as f:
        f.write("\n# touched\n")
    assert _stale(example) == DECAY_CELLS
    sh("git", "checkout", "plugins/paths.py", cwd=example)
    params = yaml.safe_load((example / "params.yaml").read_text())
    params["methods"]["fm_decay"]["path"]["p"] = 3  # what `dvc exp run -S methods.fm_decay.path.p=3` writes
    (example / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _stale(example) == DECAY_CELLS | {"report"}  # the report lists each method's _target_ and arguments
    sh("git", "checkout", "params.yaml", cwd=example)
    with (example / "plugins" / "data.py").open("a") as f:
        f.write("\n# touched\n")
    assert _stale(example) == {"prepare-ring"}
    sh("git", "checkout", "plugins/data.py", cwd=example)


@pytest.mark.slow
def test_a_plugin_import_dvc_yaml_does_not_list_stops_the_stage(example: Path) -> None:
    """An import the generator cannot follow (importlib) is caught by the stage itself: exit 2, nothing run."""
    (example / "plugins" / "helper.py").write_text("SCALE = 1.0\n")
    paths = (example / "plugins" / "paths.py").read_text()
    (example / "plugins" / "paths.py").write_text(
        paths + '\nimport importlib\n\nimportlib.import_module("plugins.helper")\n'
    )
    try:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
        proc = subprocess.run(
            [str(BIN / "dvc"), "repro", "train-ring-fm_decay"], cwd=example, env=env, capture_output=True, text=True
        )
        assert proc.returncode != 0
        assert "imports plugins/helper.py, which is not among its deps" in proc.stdout + proc.stderr
        assert "python -m fmexp dvc-yaml" in proc.stdout + proc.stderr
    finally:
        (example / "plugins" / "paths.py").write_text(paths)
        (example / "plugins" / "helper.py").unlink()


@pytest.mark.slow
def test_the_example_study_searches_the_plugins_argument_with_workers(example: Path) -> None:
    sh(sys.executable, "-m", "fmexp.sweep", "studies/decay_power.yaml", "--workers", "2", cwd=example)
    trials = pd.read_csv(example / "reports" / "sweeps" / "decay_power" / "trials.csv")
    assert sorted(trials["params_method.path.p"]) == [1, 2, 3] and set(trials["state"]) == {"COMPLETE"}
