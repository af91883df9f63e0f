"""Trials per hour of one study run by 1 worker process, by 2 (``--workers 2``: one torch thread each),
and by 2 processes started by hand, each with torch's default of one thread per core (what two
workers did before ``--workers``), side by side.

The study is checkerboard FM-OT with the pipeline's network at a short budget (``train.steps=500``),
random sigma_min, ``N_TRIALS`` trials of one seed. Each mode runs the same study in a fresh folder,
one after the other in this session. Prints trials per hour for each and the ratios to one worker,
and writes benchmarks/results/sweep_workers.csv. Run it on an idle machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
N_TRIALS = 6


def study(name: str) -> dict:
    return {
        "study": name,
        "base": str(ROOT / "params.yaml"),
        "dataset": "checkerboard",
        "method": "fm_ot",
        "overrides": [
            "train.steps=500",
            "train.eval_every=500",
            "train.curve_points=0",
            "sample.n_samples=1000",
            "sample.n_trajectories=0",
            "score.n_points=500",
        ],
        "search_space": {"method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
        "objectives": [{"metric": "nll", "direction": "minimize"}],
        "sampler": {"name": "random", "seed": 0},
        "n_trials": N_TRIALS,
        "seeds": [0],
    }


def run(mode: str, folder: Path) -> float:
    """Seconds for the whole study, process starts included. ``mode``: ``1``, ``2`` (``--workers``)
    or ``2x`` (two processes started together on one journal file, default threads)."""
    name = "w" + mode.replace("x", "by_hand")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study(name)))
    env = {k: v for k, v in os.environ.items() if k not in ("FMEXP_STORAGE", "OMP_NUM_THREADS")}
    common = [sys.executable, "-m", "fmexp.sweep", str(path), "--reports-dir", str(folder / "reports")]
    start = time.perf_counter()
    if mode.endswith("x"):
        storage = f"journal:///{folder / name}.journal"
        procs = [
            subprocess.Popen([*common, "--storage", storage], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            for _ in range(int(mode[:-1]))
        ]
        if any(p.wait() for p in procs):
            raise RuntimeError(f"a worker of mode {mode} failed")
    else:
        subprocess.run([*common, "--workers", mode], check=True, cwd=ROOT, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("1", "2", "2x"):
            seconds = run(mode, Path(tmp))
            rows.append(
                {
                    "workers": mode,
                    "trials": N_TRIALS,
                    "seconds": round(seconds, 1),
                    "trials_per_hour": round(3600 * N_TRIALS / seconds, 1),
                }
            )
            print(f"workers {mode}: {N_TRIALS} trials in {seconds:.1f} s = {rows[-1]['trials_per_hour']} trials/hour")
    base = rows[0]["trials_per_hour"]
    print(
        "against 1 worker: "
        + ", ".join(f"{r['workers']}: {r['trials_per_hour'] / base:.2f}" for r in rows[1:])
        + f" (cores: {len(os.sched_getaffinity(0))})"
    )
    out = ROOT / "benchmarks" / "results" / "sweep_workers.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "workers,trials,seconds,trials_per_hour\n"
        + "".join(f"{r['workers']},{r['trials']},{r['seconds']},{r['trials_per_hour']}\n" for r in rows)
    )


if __name__ == "__main__":
    main()
