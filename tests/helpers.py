"""Tiny params and study files for the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_params(**pipeline: list) -> dict:
    """The shipped params.yaml shrunk to seconds per run."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["pipeline"].update({"datasets": ["checkerboard"], "methods": ["fm_ot", "fm_vp"], "seeds": [0], **pipeline})
    p["data"].update(n_train=1000, n_test=200)
    p["model"].update(width=16, depth=2, time_embed_dim=8)
    p["train"].update(steps=20, eval_every=10, batch_size=64, warmup_steps=5, curve_points=32, val_batch=128)
    p["sample"].update(n_samples=100, nfe_ladder=[4, 8], fixed_solvers=["euler", "rk4"], rtol=1e-3, atol=1e-3, n_trajectories=4)
    p["score"].update(n_points=64, density_grid=12)
    p["sweep"]["studies"] = []
    p["per_dataset"] = {name: [] for name in p["per_dataset"]}  # the tiny sections above, for every dataset
    return p


def tiny_study(name: str = "tiny", **fields) -> dict:
    study = {
        "study": name,
        "base": "params.yaml",
        "dataset": "checkerboard",
        "method": "fm_ot",
        "overrides": ["train.steps=10", "train.eval_every=5"],
        "search_space": {"method.path": "choice(ot, vp)", "method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
        "objectives": [{"metric": "nll", "direction": "minimize"}, {"metric": "nfe", "direction": "minimize"}],
        "sampler": {"name": "nsga2", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": 3,
        "seeds": [0],
        "storage": None,
    }
    study.update(fields)
    return study


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
