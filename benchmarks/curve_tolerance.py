"""The convergence curve's cost and accuracy at each dopri5 tolerance (``train.curve_tol``), side by side.

    python benchmarks/curve_tolerance.py        # after `make repro`: it reads the trained models under runs/

One curve row (the NLL solve and the NFE solve of ``fmexp.pipeline.stages.train``, on the run's
``train.curve_points`` held-out points) of each trained seed-0 model, at rtol = atol = 1e-5, 1e-4 and
1e-3, interleaved in rounds after a warm-up row. Prints seconds per row (median over rounds), NFE,
the NLL and its change from 1e-5, and the time as a fraction of 1e-5's. Time it on an idle machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from fmexp.config.load import load_params, run_config, run_for
from fmexp.config.plan import resolve
from fmexp.pipeline.layout import RunFiles, load_prepared
from fmexp.pipeline.stages.train import _curve_columns
from fmexp.training.state import load_model

ROOT = Path(__file__).resolve().parents[1]
TOLERANCES = (1e-5, 1e-4, 1e-3)
CASES = (
    ("checkerboard", "fm_ot"),
    ("checkerboard", "fm_ve"),
    ("checkerboard", "sm_vp"),
    ("digits", "fm_ot"),
    ("digits", "fm_vp"),
    ("digits", "sm_vp"),
)


def main(rounds: int = 3) -> int:
    params = load_params(ROOT / "params.yaml")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; one curve row per model, median of "
        f"{rounds} rounds"
    )
    for dataset, method in CASES:
        model_file = RunFiles(ROOT / "runs" / dataset / method, 0).model
        if not model_file.exists():
            print(f"{dataset}/{method}: no trained model at {model_file.relative_to(ROOT)}; run `make repro` first")
            continue
        run = run_for(params, dataset, method, 0)
        data = load_prepared(ROOT / "data", dataset)
        plan = resolve(run, data)
        model = load_model(model_file)
        test = data.model_space(data.test, torch.Generator().manual_seed(plan.streams.curve_points))
        rows = {
            tol: _curve_columns(
                run_config(run, [f"train.curve_tol={tol}"], __file__),
                plan.method,
                test,
                plan.curve_divergence,
                plan.streams.curve,
                None,
            )
            for tol in TOLERANCES
        }
        rows[TOLERANCES[0]](0, model)  # warm-up
        seconds: dict[float, list[float]] = {tol: [] for tol in TOLERANCES}
        result: dict[float, dict[str, float]] = {}
        for _ in range(rounds):
            for tol, row in rows.items():
                start = time.perf_counter()
                result[tol] = row(0, model)
                seconds[tol].append(time.perf_counter() - start)
        base = statistics.median(seconds[TOLERANCES[0]])
        for tol in TOLERANCES:
            s = statistics.median(seconds[tol])
            print(
                f"{dataset:12s} {method:6s} tol {tol:g}: {s:6.2f} s  NFE {result[tol]['nfe']:4.0f}  NLL "
                f"{result[tol]['nll']:9.4f}"
                f"  change {result[tol]['nll'] - result[TOLERANCES[0]]['nll']:+.4f}  time {s / base:4.2f} of 1e-5's",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
