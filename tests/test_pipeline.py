"""End to end: `dvc repro` in a temporary git+dvc copy with tiny params, then the caching contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import ROOT, tiny_params, write_yaml

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    for name in ("fmexp", "studies"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    write_yaml(root / "params.yaml", tiny_params())
    sh("git", "init", "-q", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tiny", cwd=root)
    sh(str(BIN / "dvc"), "repro", cwd=root)
    return root


def test_repro_writes_metrics_tables_and_page(repo: Path) -> None:
    for method in ("fm_ot", "fm_vp"):
        metrics = json.loads((repo / "runs" / "checkerboard" / method / "0" / "metrics.json").read_text())
        assert {"nll", "distance", "nfe", "nfe_nll", "train_seconds", "steps_per_second"} <= set(metrics)
        assert metrics["nfe"] > 0 and metrics["nll"] == metrics["nll"]  # finite, not NaN
    table = pd.read_csv(repo / "reports" / "tables" / "checkerboard.csv", index_col=0)
    assert list(table.index) == ["fm_ot", "fm_vp"]
    assert (repo / "reports" / "tables" / "checkerboard.md").read_text().count("**") == 6  # one bold cell per column
    assert "\\textbf" in (repo / "reports" / "tables" / "checkerboard.tex").read_text()
    page = (repo / "reports" / "summary.html").read_text()
    assert "<h3>checkerboard</h3>" in page and page.count("data:image/png;base64,") >= 4
    assert "http://" not in page and "https://" not in page  # self-contained
    for png in ("convergence", "nfe_error", "nfe_quality", "panels_checkerboard"):
        assert (repo / "reports" / "figures" / f"{png}.png").stat().st_size > 1000


def test_second_repro_runs_nothing(repo: Path) -> None:
    out = sh(str(BIN / "dvc"), "repro", cwd=repo)
    assert "Running stage" not in out


def test_dvc_reads_metrics_and_plots(repo: Path) -> None:
    shown = json.loads(sh(str(BIN / "dvc"), "metrics", "show", "--json", cwd=repo))
    text = json.dumps(shown)
    assert "runs/checkerboard/fm_ot/0/metrics.json" in text and "nll" in text


def test_changing_the_tolerance_reruns_sampling_not_training(repo: Path) -> None:
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("rtol: 0.001", "rtol: 0.0001"))
    try:
        out = sh(str(BIN / "dvc"), "repro", "--dry", cwd=repo)
    finally:
        (repo / "params.yaml").write_text(params)
    stages = {line.split("'")[1].split("@")[0] for line in out.splitlines() if line.startswith("Running stage")}
    assert stages == {"sample", "score", "report", "sweep"}, out
