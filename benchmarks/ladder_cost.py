"""What the few-step samplers add to the sample and score stages: the shipped NFE ladder against the
paper's (euler, midpoint and rk4 on the uniform grid), side by side.

    python benchmarks/ladder_cost.py [DATASET ...]  # after `make repro`: it reads the trained models under runs/

For one seed-0 model per dataset, the sample stage and then the score stage (without the density grid)
run once with each cell's ladder as ``params.yaml`` gives it, and once without heun2 and EDM's grid,
interleaved in rounds after a warm-up, each into a folder of its own. Prints the seconds (median over
rounds) of both, their difference, and that difference times the cells of the default pipeline that
run that ladder (seeds included): the samplers' share of `make repro`'s work. Time it on an idle machine.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fmexp.config.load import load_params, run_config, run_for
from fmexp.config.schema import RunConfig
from fmexp.pipeline.layout import RunFiles, load_prepared
from fmexp.pipeline.stages.sample import sample_run
from fmexp.pipeline.stages.score import score_run

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("euler", "midpoint", "rk4")
CASES = (("checkerboard", "fm_ot"), ("8gaussians", "fm_ot"), ("digits", "fm_ot"))


def papers_ladder(run: RunConfig) -> RunConfig:
    """``run`` with the ladder the paper's samplers give: no heun2, the uniform grid only."""
    solvers = [s for s in run.sample.fixed_solvers if s in PAPERS]
    return run_config(run, [f"sample.fixed_solvers=[{','.join(solvers)}]", "sample.grids=[uniform]"], __file__)


def _ladder(run: RunConfig) -> tuple[list[str], list[str], list[int]]:
    return run.sample.fixed_solvers, run.sample.grids, run.sample.nfe_ladder


def _stages(run: RunConfig, model: Path, folder: Path) -> Callable[[], float]:
    """A callable that samples and scores ``run`` from ``model`` in ``folder``; its seconds."""
    data = load_prepared(ROOT / "data", run.dataset)
    files = RunFiles(folder / run.dataset / run.method_name, run.seed)
    files.model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, files.model)

    def timed() -> float:
        start = time.perf_counter()
        sample_run(run, data, files)
        score_run(run, data, files, density=False, data_dir=ROOT / "data")
        return time.perf_counter() - start

    return timed


def main(datasets: list[str], rounds: int = 3) -> int:
    params = load_params(ROOT / "params.yaml")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sample + score of seed 0, median of {rounds}")
    for dataset, method in CASES:
        if datasets and dataset not in datasets:
            continue
        model = RunFiles(ROOT / "runs" / dataset / method, 0).model
        if not model.exists():
            print(f"{dataset}/{method}: no trained model at {model.relative_to(ROOT)}; run `make repro` first")
            continue
        run = run_for(params, dataset, method, 0)
        with tempfile.TemporaryDirectory() as tmp:
            shipped, paper = (
                _stages(run, model, Path(tmp) / "shipped"),
                _stages(papers_ladder(run), model, Path(tmp) / "paper"),
            )
            shipped(), paper()  # warm-up
            seconds: dict[str, list[float]] = {"shipped": [], "paper": []}
            for _ in range(rounds):
                seconds["shipped"].append(shipped())
                seconds["paper"].append(paper())
        s, p = statistics.median(seconds["shipped"]), statistics.median(seconds["paper"])
        methods = [
            *params.pipeline.methods_by_dataset.get(dataset, params.pipeline.methods),
            *params.rounds_of(dataset),
        ]
        same = [m for m in methods if _ladder(run_for(params, dataset, m, 0)) == _ladder(run)]
        cells = len(same) * len(params.pipeline.seeds)
        print(
            f"{dataset:12s} {method}: shipped ladder {s:6.2f} s, the paper's {p:6.2f} s: +{s - p:5.2f} s a seed "
            f"({s / p:4.2f}x); x {cells} seed runs with this ladder ({', '.join(same)}): +{(s - p) * cells:6.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
