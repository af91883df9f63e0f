"""Trials per hour of one study run by 1 worker process and by 2 (``--workers``), side by side.

The study is checkerboard FM-OT with the pipeline's network at a short budget (``train.steps=500``),
random sigma_min, ``n_trials`` trials of one seed. Each worker count runs the same study in a fresh
folder; the second runs in the same session right after the first. Prints trials per hour for each and
their ratio, and writes benchmarks/results/sweep_workers.csv. Run it on an idle machine.
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
        "study": name, "base": str(ROOT / "params.yaml"), "dataset": "checkerboard", "method": "fm_ot",
        "overrides": ["train.steps=500", "train.eval_every=500", "train.curve_points=0", "sample.n_samples=1000",
                      "sample.n_trajectories=0", "score.n_points=500"],
        "search_space": {"method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
        "objectives": [{"metric": "nll", "direction": "minimize"}],
        "sampler": {"name": "random", "seed": 0}, "n_trials": N_TRIALS, "seeds": [0],
    }


def run(workers: int, folder: Path) -> float:
    """Seconds for the whole study, process start included."""
    path = folder / f"w{workers}.yaml"
    path.write_text(yaml.safe_dump(study(f"w{workers}")))
    env = {k: v for k, v in os.environ.items() if k != "FMEXP_STORAGE"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fmexp.sweep", str(path), "--workers", str(workers), "--reports-dir",
                    str(folder / "reports")], check=True, cwd=ROOT, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            seconds = run(workers, Path(tmp))
            rows.append({"workers": workers, "trials": N_TRIALS, "seconds": round(seconds, 1),
                         "trials_per_hour": round(3600 * N_TRIALS / seconds, 1)})
            print(f"--workers {workers}: {N_TRIALS} trials in {seconds:.1f} s = {rows[-1]['trials_per_hour']} trials/hour")
    print(f"ratio 2 workers / 1: {rows[1]['trials_per_hour'] / rows[0]['trials_per_hour']:.2f} (cores: {len(os.sched_getaffinity(0))})")
    out = ROOT / "benchmarks" / "results" / "sweep_workers.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("workers,trials,seconds,trials_per_hour\n" + "".join(
        f"{r['workers']},{r['trials']},{r['seconds']},{r['trials_per_hour']}\n" for r in rows))


if __name__ == "__main__":
    main()
