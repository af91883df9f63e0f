"""Stage functions: reproducible metrics on CPU, every method end to end, the VE sigma_max rule."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from fmexp.config.load import load_params, run_for
from fmexp.config.plan import build_method
from fmexp.data.datasets import load_dataset, max_pairwise_distance
from fmexp.pipeline.layout import RunFiles
from fmexp.pipeline.stages.aggregate import run_stage
from fmexp.pipeline.stages.prepare import prepare
from fmexp.pipeline.stages.sample import sample_run
from fmexp.pipeline.stages.score import score_run
from fmexp.pipeline.stages.train import train_run
from tests.helpers import tiny_params, write_yaml

REPRODUCIBLE = ("nll", "nll_se", "distance", "nfe", "nfe_nll")


def run_all(run, data, files: RunFiles) -> dict:
    """Train, sample and score one seed, as a sweep trial does."""
    train_run(run, data, files, progress=False)
    sample_run(run, data, files)
    return score_run(run, data, files, density=False)


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory):
    p = tiny_params(methods=["fm_ot", "fm_vp", "sm_vp", "fm_ve"])
    return load_params(write_yaml(tmp_path_factory.mktemp("p") / "params.yaml", p))


@pytest.fixture(scope="module")
def data(params):
    return load_dataset("checkerboard", params.data.n_train, params.data.n_test, params.data.seed)


def test_same_params_give_the_same_metrics(tmp_path: Path, params, data) -> None:
    run = run_for(params, "checkerboard", "fm_ot", 0)
    a, b = run_all(run, data, RunFiles(tmp_path / "a", 0)), run_all(run, data, RunFiles(tmp_path / "b", 0))
    assert {k: a[k] for k in REPRODUCIBLE} == {k: b[k] for k in REPRODUCIBLE}
    c = run_all(run_for(params, "checkerboard", "fm_ot", 1), data, RunFiles(tmp_path / "c", 1))
    assert c["nll"] != a["nll"]  # the seed matters


@pytest.mark.parametrize("method", ["fm_ot", "fm_vp", "sm_vp", "fm_ve"])
def test_every_method_through_the_stages(tmp_path: Path, params, data, method: str) -> None:
    run = run_for(params, "checkerboard", method, 0)
    files = RunFiles.of(tmp_path, run)
    train_run(run, data, files, progress=False)
    sample = sample_run(run, data, files)
    metrics = score_run(run, data, files)
    assert metrics["nfe"] == sample["nfe"] > 0
    assert all(torch.isfinite(torch.tensor(float(metrics[k]))) for k in REPRODUCIBLE)
    density = torch.load(files.density, weights_only=True)
    assert (
        density["logp"].shape == (len(run.score.density_times), 12, 12)
        and density["t"].tolist() == run.score.density_times
    )
    grid = torch.stack(
        torch.meshgrid(density["x"], density["y"], indexing="xy"), -1
    )  # p_0 is the source N(0, prior_std^2 I)
    prior_std = build_method(run, data).path.prior_std
    torch.testing.assert_close(
        density["logp"][0], -grid.pow(2).sum(-1) / (2 * prior_std**2) - math.log(2 * math.pi * prior_std**2)
    )
    uniform = {"euler:4", "euler:8", "rk4:1", "rk4:2"}
    edm = {key.replace(":", "@edm:") for key in uniform}
    assert run.sample.grids == ["uniform", "edm"]
    assert set(torch.load(files.samples, weights_only=True)["ladder"]) == uniform | edm
    ladder = files.ladder.read_text().splitlines()
    assert ladder[0] == "solver,grid,steps,nfe,error,distance" and len(ladder) == 1 + 2 * 2 * 2  # euler, rk4 at 4 and 8
    stored = torch.load(files.samples, weights_only=True)["ladder"]
    assert (run.score.few_step, run.score.few_step_nfe, run.score.distance) == ("euler", 4, "w2")
    assert metrics["few_step"] == pytest.approx(_exact_w2(stored["euler:4"], data.test), rel=1e-9)
    assert json.loads(files.train_info.read_text())["run"]["method_name"] == method
    assert files.model == tmp_path / "checkerboard" / method / "train" / "0" / "model.pt"


def test_ve_sigma_max_defaults_to_the_largest_pairwise_distance(params, data) -> None:
    method = build_method(run_for(params, "checkerboard", "fm_ve", 0), data)
    assert method.path.prior_std == pytest.approx(max_pairwise_distance(data.train))


@pytest.mark.slow
def test_run_stage_loops_over_seeds_and_summarizes(tmp_path: Path, params) -> None:

    p = copy.deepcopy(params)
    p.pipeline.seeds = [0, 1]
    prepare(p, tmp_path / "data")
    for stage in ("train", "sample", "score"):
        run_stage(stage, p, "checkerboard", "fm_ot", data_dir=tmp_path / "data", runs_dir=tmp_path / "runs")
    folder = tmp_path / "runs" / "checkerboard" / "fm_ot"
    seeds = [json.loads((folder / "score" / s / "metrics.json").read_text()) for s in ("0", "1")]
    nll, w2 = [m["nll"] for m in seeds], [m["distance"] for m in seeds]
    summary = json.loads((folder / "score" / "summary.json").read_text())
    assert summary["seeds"] == {"0": seeds[0], "1": seeds[1]}
    assert summary["mean"]["nfe"] == pytest.approx((seeds[0]["nfe"] + seeds[1]["nfe"]) / 2)
    assert all(json.loads((folder / "log" / s / "train.json").read_text())["seconds"] > 0 for s in ("0", "1"))
    metrics = json.loads((folder / "metrics.json").read_text())  # DVC's metrics: the science, no timings, no seeds
    assert set(metrics) == {"nll", "nll_se", "w2", "nfe", "nfe_nll"}
    assert metrics["nll"] == pytest.approx({"mean": sum(nll) / 2, "std": abs(nll[0] - nll[1]) / 2**0.5})
    assert metrics["w2"] == pytest.approx({"mean": sum(w2) / 2, "std": abs(w2[0] - w2[1]) / 2**0.5})
    assert metrics["nll_se"] == pytest.approx({"mean": (seeds[0]["nll_se"] + seeds[1]["nll_se"]) / 2})
    # the density grid (Fig. 4) for the report's seed, the first, only
    assert [(folder / "score" / s / "density.pt").exists() for s in ("0", "1")] == [True, False]


def test_worker_processes_give_the_one_thread_results(tmp_path: Path, params, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pipeline.workers: 2`` trains two seeds in two worker processes of cores // 2 threads; each must
    write exactly the weights that the same seed trains in this process with that many threads."""
    import os

    p = copy.deepcopy(params)
    p.pipeline.seeds, p.pipeline.workers = [0, 1], 2
    prepare(p, tmp_path / "data")
    run_stage("train", p, "checkerboard", "fm_ot", data_dir=tmp_path / "data", runs_dir=tmp_path / "workers")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        p.pipeline.workers = 1
        run_stage("train", p, "checkerboard", "fm_ot", data_dir=tmp_path / "data", runs_dir=tmp_path / "serial")
    finally:
        torch.set_num_threads(threads)
    for seed in ("0", "1"):
        a, b = (
            torch.load(tmp_path / d / "checkerboard" / "fm_ot" / "train" / seed / "model.pt", weights_only=True)
            for d in ("workers", "serial")
        )
        assert all(torch.equal(a["ema_weights"][k], b["ema_weights"][k]) for k in a["ema_weights"])


def _exact_w2(x: torch.Tensor, y: torch.Tensor) -> float:
    """W2 between two point clouds by POT's exact solver, uniform weights: the reference for ``few_step``."""
    import ot

    cost = ot.dist(x.double().numpy(), y.double().numpy())
    return float(ot.emd2([], [], cost, numItermax=10_000_000)) ** 0.5
