"""One function per pipeline stage: read a config, call the library, write artifacts.

The DVC pipeline (``python -m fmexp <stage>``) and the sweep (``fmexp.sweep``) both call these, so
there is one way to train, sample and score. Files of one run live in ``runs/<dataset>/<method>/<seed>/``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

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

__all__ = ["run_dir", "prepare", "load_prepared", "build_method", "train_run", "sample_run", "score_run"]

OnEval = Callable[[dict[str, float]], None]


def run_dir(root: str | Path, run: RunConfig) -> Path:
    return Path(root) / run.dataset / run.method_name / str(run.seed)


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


def train_run(run: RunConfig, data: Dataset, out: str | Path, *, on_eval: OnEval | None = None, progress: bool | None = None) -> TrainResult:
    """Train one run; write ``model.pt`` (EMA weights, spec, resumable state), ``curve.csv`` and ``train.json``."""
    out = Path(out)
    device = device_for(run)
    train_data, test = data.train.to(device), data.test.to(device)
    method = build_method(run, data.train)
    torch.manual_seed(run.seed)
    spec = {"name": run.model.name, "dim": data.dim, "width": run.model.width, "depth": run.model.depth,
            "activation": run.model.activation, "time_embed_dim": run.model.time_embed_dim}
    model = build_model(**spec).to(device)
    result = train(method, model, train_data, run.train, seed=run.seed, val_data=test,
                   evaluate=_curve_columns(run, method, test, on_eval), checkpoint=out / "model.pt",
                   model_spec=spec, progress=progress)
    artifacts.write_csv(out / "curve.csv", result.rows)
    artifacts.write_json(out / "train.json", {"seconds": result.seconds, "steps": run.train.steps,
                                              "steps_per_second": result.steps_per_second, "device": str(device),
                                              "run": to_plain(run)})
    return result


def _load(run: RunConfig, data: Dataset, out: Path) -> tuple[Method, torch.nn.Module, torch.device]:
    device = device_for(run)
    return build_method(run, data.train), load_model(out / "model.pt", map_location=device), device


def sample_run(run: RunConfig, data: Dataset, out: str | Path) -> dict[str, float]:
    """Sample with dopri5 at ``sample.rtol``/``atol`` and with each fixed-step solver at the NFE ladder (Fig. 7).

    Writes ``samples.pt`` (samples and a few trajectories), ``sample.json`` (NFE, time) and
    ``ladder.csv``: per solver and NFE budget, the mean distance of the endpoints to the dopri5
    endpoints from the same noise (the paper's error against a high-accuracy solve), and the
    sliced W2 distance to the held-out data.
    """
    out = Path(out)
    method, model, device = _load(run, data, out)
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(run.seed + 3)
    x_0 = method.sample_source((run.sample.n_samples, *data.train.shape[1:]), gen, device)
    n_traj = min(run.sample.n_trajectories, run.sample.n_samples)
    adaptive = SOLVERS[run.sample.method].adaptive
    save_at = [i / 16 for i in range(1, 16)] if adaptive else None
    start = time.perf_counter()
    with torch.no_grad():
        ref = integrate(v, x_0, method=run.sample.method, **run.sample.tolerances, save_at=save_at,
                        steps=None if adaptive else run.sample.steps)
        seconds = time.perf_counter() - start
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
                               "distance": sliced_wasserstein(res.x.cpu(), test.cpu(), seed=run.seed)})
    artifacts.save_torch(out / "samples.pt", {"samples": ref.x.cpu(), "trajectories": ref.xs[:, :n_traj].cpu(), "times": ref.times.cpu()})
    artifacts.write_csv(out / "ladder.csv", ladder)
    summary = {"nfe": ref.nfe, "seconds": seconds, "method": run.sample.method, **run.sample.tolerances}
    artifacts.write_json(out / "sample.json", summary)
    return summary


def score_run(run: RunConfig, data: Dataset, out: str | Path, *, density: bool = True) -> dict[str, float]:
    """Write ``metrics.json``: held-out NLL (nats), sample distance, NFE, training time and speed.

    With ``density``, also writes ``density.pt``: the model's log-density on a ``score.density_grid``
    square over the data's range (2-D data only; dopri5 at 1e-4), for the paper's Fig. 4 panels.
    """
    out = Path(out)
    method, model, device = _load(run, data, out)
    v = method.velocity(model)
    test = data.test[: run.score.n_points].to(device)
    start = time.perf_counter()
    ll = log_likelihood(v, test, divergence=run.score.divergence, prior_std=method.path.prior_std,
                        **run.sample.tolerances, generator=torch.Generator(device=device).manual_seed(run.seed + 4))
    nll_seconds = time.perf_counter() - start
    samples = artifacts.load_torch(out / "samples.pt")["samples"]
    sampled, trained = artifacts.read_json(out / "sample.json"), artifacts.read_json(out / "train.json")
    nll = -ll.logp.double()
    metrics = {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std() / len(nll) ** 0.5),
        "distance": sample_distance(run.score.distance, samples[: len(data.test)], data.test),
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
        artifacts.save_torch(out / "density.pt", payload)
    artifacts.write_json(out / "metrics.json", metrics)
    return metrics


def run_all(run: RunConfig, data: Dataset, out: str | Path, *, on_eval: OnEval | None = None) -> dict[str, float]:
    """Train, sample and score one run (what a sweep trial does for each seed)."""
    train_run(run, data, out, on_eval=on_eval, progress=False)
    sample_run(run, data, out)
    return score_run(run, data, out, density=False)


def with_seed(run: RunConfig, seed: int) -> RunConfig:
    return replace(run, seed=seed)
