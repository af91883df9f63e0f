"""One function per pipeline stage: read a config, call the library, write artifacts.

The DVC pipeline (``python -m fmexp <stage>``) and the sweep (``fmexp.sweep``) both call these, so
there is one way to train, sample and score. ``RunFiles`` is the one place that lays out a run's
files: each stage writes its own folder, ``<root>/<stage>/<seed>/``, which is what DVC tracks.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from fmexp import artifacts
from fmexp.config import ConfigError, DataConfig, ModelConfig, Params, RunConfig, to_plain
from fmexp.data import Dataset, load_dataset, max_pairwise_distance
from fmexp.images import IMAGE_DATASETS
from fmexp.likelihood import log_likelihood, log_mean_likelihood
from fmexp.methods import Method, make_method
from fmexp.metrics import bits_per_dim, sample_distance, sliced_wasserstein
from fmexp.models import build_model
from fmexp.ode import SOLVERS, integrate
from fmexp.training import TrainResult, load_model, train

__all__ = ["RunFiles", "load_data", "prepare", "load_prepared", "build_method", "train_run", "sample_run", "score_run", "run_all"]

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

    @property
    def fid_ladder(self) -> Path:
        return self.stage("score") / "fid_ladder.csv"


def device_for(run: RunConfig) -> torch.device:
    name = run.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_data(params_data: DataConfig, name: str) -> Dataset:
    """Dataset ``name`` as ``params_data`` sets it (image datasets read their folder and size)."""
    return load_dataset(name, params_data.n_train, params_data.n_test, params_data.seed, **(
        {"root": params_data.root, "size": params_data.image_size, "channels": params_data.channels,
         "download": params_data.download} if name in IMAGE_DATASETS else {}))


def prepare(params: Params, data_dir: str | Path = "data") -> None:
    """Store each dataset's fixed splits in ``data/<dataset>.pt``; for digits, with the FID feature
    classifier trained on its training split, and that classifier's test accuracy."""
    for name in params.pipeline.datasets:
        ds = load_data(params.data, name)
        payload = {"train": ds.train, "test": ds.test, "levels": ds.levels, "config": to_plain(params.data)}
        if name == "digits":
            payload.update(_train_classifier())
        artifacts.save_torch(Path(data_dir) / f"{name}.pt", payload)


def load_prepared(data_dir: str | Path, dataset: str) -> Dataset:
    state = artifacts.load_torch(Path(data_dir) / f"{dataset}.pt")
    return Dataset(name=dataset, train=state["train"], test=state["test"], levels=state.get("levels"))


def model_spec(cfg: ModelConfig, data: Dataset) -> dict[str, object]:
    """The model's registry name and constructor args for this data (``auto``: MLP if flat, U-Net if images)."""
    name = cfg.name if cfg.name != "auto" else ("unet" if data.train.dim() == 4 else "mlp")
    if name == "mlp":
        return {"name": "mlp", "dim": data.dim, "width": cfg.width, "depth": cfg.depth,
                "activation": cfg.activation, "time_embed_dim": cfg.time_embed_dim,
                "fourier_features": cfg.fourier_features, "fourier_scale": cfg.fourier_scale}
    if data.train.dim() != 4:
        raise ConfigError(f"model.name: unet needs image data (n, C, H, W); {data.name} has shape {tuple(data.train.shape)}")
    _, c, h, _ = data.train.shape
    return {"name": "unet", "in_channels": c, "resolution": h, "channels": cfg.base_channels,
            "channel_mults": list(cfg.channel_mults), "num_res_blocks": cfg.num_res_blocks,
            "attention_resolutions": list(cfg.attention_resolutions), "dropout": cfg.dropout,
            "time_embed_dim": cfg.time_embed_dim}


def build_method(run: RunConfig, data: Dataset) -> Method:
    """The run's method; a VE path without ``sigma_max`` takes the largest pairwise distance of the
    training split as the model sees it (images dequantized with a fixed seed)."""
    m = run.method
    kwargs: dict[str, float] = {"sigma_min": m.sigma_min}
    if m.path == "ve":
        kwargs["sigma_max"] = m.sigma_max if m.sigma_max is not None else max_pairwise_distance(
            data.model_space(data.train, torch.Generator().manual_seed(0)))
    return make_method(m.objective, m.path, m.coupling, run.train.time_sampler, **kwargs)


def auto_divergence(data: Dataset) -> str:
    """``score.divergence: auto``: the exact trace for flat data, Hutchinson for images."""
    return "exact" if data.levels is None else "hutchinson"


def _curve_columns(run: RunConfig, method: Method, test: Tensor, divergence: str,
                   on_eval: OnEval | None) -> Callable[[int, torch.nn.Module], dict[str, float]]:
    """NLL (with one probe where ``divergence`` is Hutchinson) and dopri5 NFE on a few held-out points
    at each eval: the convergence curves (Fig. 10)."""
    points, tol = test[: run.train.curve_points], run.train.curve_tol
    gen_seed = run.seed + 2

    def evaluate(step: int, model: torch.nn.Module) -> dict[str, float]:
        row: dict[str, float] = {}
        if len(points):
            v = method.velocity(model)
            ll = log_likelihood(v, points, divergence=divergence, prior_std=method.path.prior_std, rtol=tol, atol=tol,
                                generator=torch.Generator(device=points.device).manual_seed(gen_seed))
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
    method = build_method(run, data)
    torch.manual_seed(run.seed)
    spec = model_spec(run.model, data)
    model = build_model(**spec).to(device)
    curve_points = data.model_space(test, torch.Generator(device=device).manual_seed(run.seed + 5))
    result = train(method, model, train_data, run.train, seed=run.seed, val_data=test,
                   evaluate=_curve_columns(run, method, curve_points, auto_divergence(data), on_eval), checkpoint=files.model,
                   model_spec=spec, progress=progress, transform=data.model_space if data.levels else None)
    artifacts.write_csv(files.curve, result.rows)
    artifacts.write_json(files.train_info, {"seconds": result.seconds, "steps": run.train.steps,
                                            "steps_per_second": result.steps_per_second, "device": str(device),
                                            "run": to_plain(run)})
    return result


def _load(run: RunConfig, data: Dataset, files: RunFiles) -> tuple[Method, torch.nn.Module, torch.device]:
    device = device_for(run)
    return build_method(run, data), load_model(files.model, map_location=device), device


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
        test = data.model_space(data.test, torch.Generator().manual_seed(run.seed)).to(device)
        ladder, ladder_samples = [], {}
        for name in run.sample.fixed_solvers:
            for budget in run.sample.nfe_ladder:
                steps = budget // SOLVERS[name].evals_per_step
                if steps < 1:
                    continue
                res = integrate(v, x_0, method=name, steps=steps)
                if data.levels is not None:  # kept for FID against NFE, which the score stage computes
                    ladder_samples[f"{name}:{steps}"] = res.x.cpu()
                ladder.append({"solver": name, "steps": steps, "nfe": res.nfe,
                               "error": float((res.x - ref.x).flatten(1).norm(dim=1).mean()),
                               "distance": sliced_wasserstein(res.x.cpu(), test.cpu(), n_projections=64, seed=run.seed)})
    artifacts.save_torch(files.samples, {"samples": ref.x.cpu(), "trajectories": traj.cpu(), "ladder": ladder_samples})
    artifacts.write_csv(files.ladder, ladder)
    summary = {"nfe": ref.nfe, "seconds": seconds, "method": run.sample.method, **run.sample.tolerances}
    artifacts.write_json(files.sample_info, summary)
    return summary


def _image_metrics(run: RunConfig, data: Dataset, nll: Tensor, samples: Tensor, ladder: dict[str, Tensor], reference: Tensor,
                   data_dir: str | Path, files: RunFiles) -> dict[str, float | str]:
    """Bits/dim of the held-out images (with its standard error over points) and FID against them;
    also the FID of each fixed-step sample set of the NFE ladder, in ``fid_ladder.csv``."""
    from fmexp.features import DigitsClassifier, fid_against
    from fmexp.images import data_scale

    bpd = bits_per_dim(nll, data.dim, scale=data_scale(data.levels))
    backend = run.score.fid_backend if run.score.fid_backend != "auto" else ("digits-classifier" if data.name == "digits" else "inception")
    kwargs: dict[str, object] = {"inception_weights": run.score.inception_weights}
    if backend == "digits-classifier":
        weights, accuracy = digits_classifier(str(data_dir))
        classifier = DigitsClassifier()
        classifier.load_state_dict(weights)
        kwargs = {"classifier": classifier.eval()}
    # The same number of training images, dequantized the same way: the FID a perfect model would
    # score up to sampling noise, the floor to read the models' FIDs against. Its spread over the
    # disjoint subsets of the training split is the noise of an FID at this number of images.
    n, gen = len(samples), torch.Generator().manual_seed(run.seed + 6)
    fid = fid_against(backend, reference, **kwargs)
    floors = [fid(data.model_space(data.train[i : i + n], gen)) for i in range(0, len(data.train) - n + 1, n)]
    out: dict[str, float | str] = {"bpd": float(bpd.mean()), "bpd_se": float(bpd.std() / len(bpd) ** 0.5),
                                   "fid": fid(samples.float()), "fid_backend": backend, "fid_train_split": floors[0],
                                   "fid_floor_std": float(np.std(floors, ddof=1)) if len(floors) > 1 else float("nan")}
    rows = []
    for key, x in ladder.items():
        solver, steps = key.split(":")
        rows.append({"solver": solver, "steps": int(steps), "nfe": int(steps) * SOLVERS[solver].evals_per_step, "fid": fid(x.float())})
    artifacts.write_csv(files.fid_ladder, rows)
    if backend == "digits-classifier":
        out["fid_classifier_accuracy"] = accuracy
    return out


def _train_classifier() -> dict[str, object]:
    from fmexp.features import train_digits_classifier

    model, accuracy = train_digits_classifier(seed=0)
    return {"classifier": model.state_dict(), "classifier_accuracy": accuracy}


@functools.cache
def digits_classifier(data_dir: str | Path) -> tuple[dict[str, Tensor], float]:
    """The FID classifier that ``prepare`` stored with the digits; trained here if there is none (a sweep)."""
    path = Path(data_dir) / "digits.pt"
    state = artifacts.load_torch(path) if path.exists() else {}
    if "classifier" not in state:
        state = _train_classifier()
    return state["classifier"], float(state["classifier_accuracy"])


def score_run(run: RunConfig, data: Dataset, files: RunFiles, *, density: bool = True, data_dir: str | Path = "data") -> dict[str, float]:
    """Write ``metrics.json``: held-out NLL (nats), sample distance, NFE, training time and speed; for
    images also bits/dim with its standard error, and FID with its feature backend.

    With ``density``, also writes ``density.pt``: the model's log-density on a ``score.density_grid``
    square over the data's range (2-D data only; dopri5 at 1e-4), for the paper's Fig. 4 panels.
    """
    method, model, device = _load(run, data, files)
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(run.seed + 4)
    points = data.test[: run.score.n_points].to(device)
    divergence = run.score.divergence if run.score.divergence != "auto" else auto_divergence(data)
    draws = run.score.dequant_draws if data.levels else 1
    start = time.perf_counter()
    ll = log_mean_likelihood(v, [data.model_space(points, gen) for _ in range(draws)], probe_seed=run.seed + 7, divergence=divergence,
                             probe=run.score.probe, probes=run.score.probes, prior_std=method.path.prior_std, **run.sample.tolerances)
    logp, nfe_nll = ll.logp, ll.nfe
    nll_seconds = time.perf_counter() - start
    sampled_state = artifacts.load_torch(files.samples)
    samples = sampled_state["samples"]
    sampled, trained = artifacts.read_json(files.sample_info), artifacts.read_json(files.train_info)
    reference = data.model_space(data.test, torch.Generator().manual_seed(run.seed))  # the held-out split, as the model sees it
    nll = -logp.cpu()
    metrics: dict[str, float | str] = {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std() / len(nll) ** 0.5),
        "distance": sample_distance(run.score.distance, samples, reference),
        "distance_name": run.score.distance,
        "nfe": sampled["nfe"],
        "nfe_nll": nfe_nll,
        "nll_seconds": nll_seconds,
        "train_seconds": trained["seconds"],
        "steps_per_second": trained["steps_per_second"],
    }
    if data.levels is not None:
        metrics.update(_image_metrics(run, data, nll, samples, sampled_state.get("ladder", {}), reference, data_dir, files))
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


def run_stage(stage: str, params: Params, dataset: str, method: str, *, data_dir: str | Path = "data",
              runs_dir: str | Path = "runs") -> None:
    """One pipeline stage for one dataset and method, over every seed of ``pipeline.seeds``.

    Seeds share a process because a new process pays for ``import torch`` (about 3 s here); the
    per-seed files stay separate. With ``pipeline.workers > 1`` they run side by side in that many
    worker processes, each with ``cores // workers`` threads (at least one): on 2 cores, three
    one-thread workers train three seeds 1.3-1.5x faster than one two-thread process in turn.

    Each stage also writes one summary over seeds beside them, in ``<runs>/<dataset>/<method>/``:
    ``curve.csv`` (train) and ``ladder.csv`` (sample) with a seed column, for ``dvc plots``;
    ``metrics.json`` (score): each metric's mean and std over seeds and each seed's values, for
    ``dvc metrics``.
    """
    folder = Path(runs_dir) / dataset / method
    seeds = params.pipeline.seeds
    workers = min(params.pipeline.workers, len(seeds))
    jobs = [(stage, params.run(dataset, method, seed), str(data_dir), str(runs_dir)) for seed in seeds]
    check_inputs(stage, [job[1] for job in jobs], data_dir, runs_dir)
    artifacts.ensure_writable(folder)
    if workers > 1:
        from fmexp.processes import run_in_processes

        run_in_processes(_run_seed, jobs, workers)
    else:
        for job in jobs:
            _run_seed(*job)
    per_seed = {seed: RunFiles.of(runs_dir, job[1]) for seed, job in zip(seeds, jobs)}
    if stage == "train":  # every seed's curve in one file: a DVC plot
        _concat_csv(folder / "curve.csv", {s: f.curve for s, f in per_seed.items()})
    elif stage == "sample":
        _concat_csv(folder / "ladder.csv", {s: f.ladder for s, f in per_seed.items()})
    else:
        if all(f.fid_ladder.exists() for f in per_seed.values()):
            _concat_csv(folder / "score" / "fid_ladder.csv", {s: f.fid_ladder for s, f in per_seed.items()})
        values = {str(s): artifacts.read_json(f.metrics) for s, f in per_seed.items()}
        numeric = [k for k, v in next(iter(values.values())).items() if not isinstance(v, str)]
        table = np.array([[float(m[k]) for k in numeric] for m in values.values()])
        std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(len(numeric))
        artifacts.write_json(folder / "metrics.json", {"mean": dict(zip(numeric, table.mean(axis=0).tolist())),
                                                       "std": dict(zip(numeric, std.tolist())), "seeds": values})


UPSTREAM = {"train": (), "sample": ("train",), "score": ("train", "sample")}
"""The stages whose outputs each stage reads (besides ``data/<dataset>.pt``)."""


def check_inputs(stage: str, runs: list[RunConfig], data_dir: str | Path, runs_dir: str | Path) -> None:
    """Before any work: every file the stage reads exists, or ``ConfigError`` names the first missing
    one and the command that writes it."""
    run = runs[0]
    data_file = Path(data_dir) / f"{run.dataset}.pt"
    if not data_file.exists():
        raise ConfigError(f"{stage} needs {data_file}, which does not exist: run `python -m fmexp prepare"
                          f" pipeline.datasets=[{run.dataset}]` first (or `dvc repro prepare@{run.dataset}`)")
    for up in UPSTREAM[stage]:
        for r in runs:
            files = RunFiles.of(runs_dir, r)
            needed = {"train": files.model, "sample": files.samples}[up]
            if not needed.exists():
                raise ConfigError(f"{stage} needs {needed}, which does not exist: run `python -m fmexp {up} --dataset {r.dataset}"
                                  f" --method {r.method_name}` first (or `dvc repro {up}@{r.dataset}-{r.method_name}`)")


def _run_seed(stage: str, run: RunConfig, data_dir: str, runs_dir: str) -> None:
    """One stage for one seed (a top-level function, so that worker processes can run it)."""
    data = load_prepared(data_dir, run.dataset)
    stage_fn = {"train": train_run, "sample": sample_run, "score": functools.partial(score_run, data_dir=data_dir)}[stage]
    stage_fn(run, data, RunFiles.of(runs_dir, run))


def _concat_csv(path: Path, sources: dict[int, Path]) -> None:
    import pandas as pd

    frames = [pd.read_csv(p).assign(seed=s) for s, p in sources.items() if p.stat().st_size > 1]
    artifacts.write_csv(path, pd.concat(frames, ignore_index=True).to_dict("records") if frames else [])
