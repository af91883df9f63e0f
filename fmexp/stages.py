"""One function per pipeline stage: read a config, call the library, write artifacts.

The DVC pipeline (``python -m fmexp <stage>``) and the sweep (``fmexp.sweep``) both call these, so
there is one way to train, sample and score. ``RunFiles`` is the one place that lays out a run's
files: each stage writes its own folder, ``<root>/<stage>/<seed>/``, which is what DVC tracks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from fmexp import artifacts
from fmexp.config import Params, RunConfig, to_plain
from fmexp.data import Dataset, load_dataset, max_pairwise_distance
from fmexp.likelihood import log_likelihood
from fmexp.methods import Method, make_method
from fmexp.metrics import sample_distance, sliced_wasserstein
from fmexp.models import build_model
from fmexp.ode import SOLVERS, integrate
from fmexp.training import TrainResult, load_model, train

__all__ = ["RunFiles", "prepare", "load_prepared", "build_method", "train_run", "sample_run", "score_run", "run_all"]

OnEval = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class RunFiles:
    """Where one seed of one run keeps its files, below ``root`` (``runs/<dataset>/<method>`` in the pipeline)."""

    root: Path
    seed: int

    @classmethod
    def of(cls, runs_dir: str | Path, run: RunConfig) -> RunFiles:
        return cls(Path(runs_dir) / run.dataset / run.method_name, run.seed)

    def stage(self, name: str) -> Path:
        return self.root / name / str(self.seed)

    @property
    def model(self) -> Path:
        return self.stage("train") / "model.pt"

    @property
    def curve(self) -> Path:
        return self.stage("train") / "curve.csv"

    @property
    def train_info(self) -> Path:
        return self.stage("train") / "train.json"

    @property
    def samples(self) -> Path:
        return self.stage("sample") / "samples.pt"

    @property
    def sample_info(self) -> Path:
        return self.stage("sample") / "sample.json"

    @property
    def ladder(self) -> Path:
        return self.stage("sample") / "ladder.csv"

    @property
    def metrics(self) -> Path:
        return self.stage("score") / "metrics.json"

    @property
    def density(self) -> Path:
        return self.stage("score") / "density.pt"


def device_for(run: RunConfig) -> torch.device:
    name = run.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def prepare(params: Params, data_dir: str | Path = "data") -> None:
    """Draw each dataset's fixed splits once and store them in ``data/<dataset>.pt``."""
    for name in params.pipeline.datasets:
        ds = load_dataset(name, params.data.n_train, params.data.n_test, params.data.seed)
        artifacts.save_torch(Path(data_dir) / f"{name}.pt", {"train": ds.train, "test": ds.test, "config": to_plain(params.data)})


def load_prepared(data_dir: str | Path, dataset: str) -> Dataset:
    state = artifacts.load_torch(Path(data_dir) / f"{dataset}.pt")
    return Dataset(name=dataset, train=state["train"], test=state["test"])


def build_method(run: RunConfig, train_data: Tensor) -> Method:
    """The run's method; a VE path without ``sigma_max`` takes the data's largest pairwise distance."""
    m = run.method
    kwargs: dict[str, float] = {"sigma_min": m.sigma_min}
    if m.path == "ve":
        kwargs["sigma_max"] = m.sigma_max if m.sigma_max is not None else max_pairwise_distance(train_data)
    return make_method(m.objective, m.path, m.coupling, **kwargs)


def _curve_columns(run: RunConfig, method: Method, test: Tensor, on_eval: OnEval | None) -> Callable[[int, torch.nn.Module], dict[str, float]]:
    """NLL and dopri5 NFE on a few held-out points at each eval: the convergence curves (Fig. 10)."""
    points, tol = test[: run.train.curve_points], run.train.curve_tol
    gen_seed = run.seed + 2

    def evaluate(step: int, model: torch.nn.Module) -> dict[str, float]:
        row: dict[str, float] = {}
        if len(points):
            v = method.velocity(model)
            ll = log_likelihood(v, points, prior_std=method.path.prior_std, rtol=tol, atol=tol)
            with torch.no_grad():
                x_0 = method.sample_source(tuple(points.shape), torch.Generator(device=points.device).manual_seed(gen_seed), points.device)
                row = {"nll": float(-ll.logp.mean()), "nfe": float(integrate(v, x_0, rtol=tol, atol=tol).nfe)}
        if on_eval is not None:
            on_eval({"step": step, **row})
        return row

    return evaluate


def train_run(run: RunConfig, data: Dataset, files: RunFiles, *, on_eval: OnEval | None = None, progress: bool | None = None) -> TrainResult:
    """Train one seed; write ``model.pt`` (EMA weights, spec, resumable state), ``curve.csv`` and ``train.json``."""
    device = device_for(run)
    train_data, test = data.train.to(device), data.test.to(device)
    method = build_method(run, data.train)
    torch.manual_seed(run.seed)
    spec = {"name": run.model.name, "dim": data.dim, "width": run.model.width, "depth": run.model.depth,
            "activation": run.model.activation, "time_embed_dim": run.model.time_embed_dim}
    model = build_model(**spec).to(device)
    result = train(method, model, train_data, run.train, seed=run.seed, val_data=test,
                   evaluate=_curve_columns(run, method, test, on_eval), checkpoint=files.model,
                   model_spec=spec, progress=progress)
    artifacts.write_csv(files.curve, result.rows)
    artifacts.write_json(files.train_info, {"seconds": result.seconds, "steps": run.train.steps,
                                            "steps_per_second": result.steps_per_second, "device": str(device),
                                            "run": to_plain(run)})
    return result


def _load(run: RunConfig, data: Dataset, files: RunFiles) -> tuple[Method, torch.nn.Module, torch.device]:
    device = device_for(run)
    return build_method(run, data.train), load_model(files.model, map_location=device), device


def sample_run(run: RunConfig, data: Dataset, files: RunFiles) -> dict[str, float]:
    """Sample with dopri5 at ``sample.rtol``/``atol`` and with each fixed-step solver at the NFE ladder (Fig. 7).

    Writes ``samples.pt`` (samples, and a few trajectories from a separate solve, so that saving
    them does not change the NFE), ``sample.json`` (NFE, time) and ``ladder.csv``: per solver and
    NFE budget, the mean distance of the endpoints to the dopri5 endpoints from the same noise (the
    paper's error against an accurate solve), and the sliced W2 distance to the held-out data.
    """
    method, model, device = _load(run, data, files)
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(run.seed + 3)
    x_0 = method.sample_source((run.sample.n_samples, *data.train.shape[1:]), gen, device)
    adaptive = SOLVERS[run.sample.method].adaptive
    solve = {"method": run.sample.method, **run.sample.tolerances, "steps": None if adaptive else run.sample.steps}
    with torch.no_grad():
        start = time.perf_counter()
        ref = integrate(v, x_0, **solve)
        seconds = time.perf_counter() - start
        n_traj = min(run.sample.n_trajectories, run.sample.n_samples)
        save_at = [i / 16 for i in range(1, 16)] if adaptive else None
        traj = integrate(v, x_0[:n_traj], **solve, save_at=save_at).xs if n_traj else x_0[:0]
        test = data.test.to(device)
        ladder = []
        for name in run.sample.fixed_solvers:
            for budget in run.sample.nfe_ladder:
                steps = budget // SOLVERS[name].evals_per_step
                if steps < 1:
                    continue
                res = integrate(v, x_0, method=name, steps=steps)
                ladder.append({"solver": name, "steps": steps, "nfe": res.nfe,
                               "error": float((res.x - ref.x).flatten(1).norm(dim=1).mean()),
                               "distance": sliced_wasserstein(res.x.cpu(), test.cpu(), n_projections=64, seed=run.seed)})
    artifacts.save_torch(files.samples, {"samples": ref.x.cpu(), "trajectories": traj.cpu()})
    artifacts.write_csv(files.ladder, ladder)
    summary = {"nfe": ref.nfe, "seconds": seconds, "method": run.sample.method, **run.sample.tolerances}
    artifacts.write_json(files.sample_info, summary)
    return summary


def score_run(run: RunConfig, data: Dataset, files: RunFiles, *, density: bool = True) -> dict[str, float]:
    """Write ``metrics.json``: held-out NLL (nats), sample distance, NFE, training time and speed.

    With ``density``, also writes ``density.pt``: the model's log-density on a ``score.density_grid``
    square over the data's range (2-D data only; dopri5 at 1e-4), for the paper's Fig. 4 panels.
    """
    method, model, device = _load(run, data, files)
    v = method.velocity(model)
    test = data.test[: run.score.n_points].to(device)
    start = time.perf_counter()
    ll = log_likelihood(v, test, divergence=run.score.divergence, prior_std=method.path.prior_std,
                        **run.sample.tolerances, generator=torch.Generator(device=device).manual_seed(run.seed + 4))
    nll_seconds = time.perf_counter() - start
    samples = artifacts.load_torch(files.samples)["samples"]
    sampled, trained = artifacts.read_json(files.sample_info), artifacts.read_json(files.train_info)
    nll = -ll.logp.double()
    metrics = {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std() / len(nll) ** 0.5),
        "distance": sample_distance(run.score.distance, samples, data.test),
        "distance_name": run.score.distance,
        "nfe": sampled["nfe"],
        "nfe_nll": ll.nfe,
        "nll_seconds": nll_seconds,
        "train_seconds": trained["seconds"],
        "steps_per_second": trained["steps_per_second"],
    }
    if density:  # the pipeline's output; empty where it does not apply (grid 0 or data not 2-D)
        grid_n = run.score.density_grid if data.dim == 2 else 0
        payload: dict[str, Tensor] = {}
        if grid_n > 0:
            lo, hi = data.test.min(0).values - 0.5, data.test.max(0).values + 0.5
            axes = [torch.linspace(float(lo[i]), float(hi[i]), grid_n) for i in range(2)]
            grid = torch.stack(torch.meshgrid(*axes, indexing="xy"), -1).reshape(-1, 2).to(device)
            logp = log_likelihood(v, grid, prior_std=method.path.prior_std, rtol=1e-4, atol=1e-4).logp
            payload = {"x": axes[0], "y": axes[1], "logp": logp.reshape(grid_n, grid_n).cpu()}
        artifacts.save_torch(files.density, payload)
    artifacts.write_json(files.metrics, metrics)
    return metrics


def run_all(run: RunConfig, data: Dataset, files: RunFiles, *, on_eval: OnEval | None = None) -> dict[str, float]:
    """Train, sample and score one seed (what a sweep trial does for each of its seeds)."""
    train_run(run, data, files, on_eval=on_eval, progress=False)
    sample_run(run, data, files)
    return score_run(run, data, files, density=False)


def with_seed(run: RunConfig, seed: int) -> RunConfig:
    return replace(run, seed=seed)


STAGES = {"train": train_run, "sample": sample_run, "score": score_run}


def run_stage(stage: str, params: Params, dataset: str, method: str, *, data_dir: str | Path = "data",
              runs_dir: str | Path = "runs") -> None:
    """One pipeline stage for one dataset and method, over every seed of ``pipeline.seeds`` in this process.

    Seeds share a process because a new process pays for ``import torch`` (about 3 s here); the
    per-seed files stay separate. Each stage also writes one summary over seeds beside them, in
    ``<runs>/<dataset>/<method>/``: ``curve.csv`` (train) and ``ladder.csv`` (sample) with a seed
    column, for ``dvc plots``; ``metrics.json`` (score): each metric's mean and std over seeds and
    each seed's values, for ``dvc metrics``.
    """
    data = load_prepared(data_dir, dataset)
    folder = Path(runs_dir) / dataset / method
    per_seed = {}
    for seed in params.pipeline.seeds:
        run = params.run(dataset, method, seed)
        files = RunFiles.of(runs_dir, run)
        STAGES[stage](run, data, files)
        per_seed[seed] = files
    if stage == "train":  # every seed's curve in one file: a DVC plot
        _concat_csv(folder / "curve.csv", {s: f.curve for s, f in per_seed.items()})
    elif stage == "sample":
        _concat_csv(folder / "ladder.csv", {s: f.ladder for s, f in per_seed.items()})
    else:
        values = {str(s): artifacts.read_json(f.metrics) for s, f in per_seed.items()}
        numeric = [k for k, v in next(iter(values.values())).items() if not isinstance(v, str)]
        table = np.array([[float(m[k]) for k in numeric] for m in values.values()])
        std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(len(numeric))
        artifacts.write_json(folder / "metrics.json", {"mean": dict(zip(numeric, table.mean(axis=0).tolist())),
                                                       "std": dict(zip(numeric, std.tolist())), "seeds": values})


def _concat_csv(path: Path, sources: dict[int, Path]) -> None:
    import pandas as pd

    frames = [pd.read_csv(p).assign(seed=s) for s, p in sources.items() if p.stat().st_size > 1]
    artifacts.write_csv(path, pd.concat(frames, ignore_index=True).to_dict("records") if frames else [])
