"""A stage over every seed of ``pipeline.seeds``: check its inputs, run the seeds (side by side in
worker processes with ``pipeline.workers``), and summarize them for DVC's plots and metrics."""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from fmexp.config.load import run_for
from fmexp.config.schema import Params, RunConfig
from fmexp.errors import ConfigError, RunFailed, SolverError, TrainingDiverged
from fmexp.flow.units import dvc_metrics
from fmexp.pipeline.code_deps import check_plugin_deps
from fmexp.pipeline.layout import RunFiles, data_file, load_prepared
from fmexp.runtime import artifacts
from fmexp.training.launch import launched, world

__all__ = ["UPSTREAM", "check_inputs", "run_stage", "summarize", "science"]
log = logging.getLogger(__name__)


def run_stage(
    stage: str,
    params: Params,
    dataset: str,
    method: str,
    *,
    data_dir: str | Path = "data",
    runs_dir: str | Path = "runs",
) -> None:
    """One pipeline stage for one dataset and method, over every seed of ``pipeline.seeds``.

    Seeds share a process because a new process pays for ``import torch`` (about 3 s here); the
    per-seed files stay separate. With ``pipeline.workers > 1`` they run side by side in that many
    worker processes, each with ``cores // workers`` threads (at least one): on 2 cores, three
    one-thread workers train three seeds 1.3-1.5x faster than one two-thread process in turn.

    The score stage draws the 2-D density grid (``density.pt``, Fig. 4) for the first seed only: the
    report's panels show that seed, and the grid's solves are most of a 2-D seed's scoring time.

    Each stage also writes one summary over seeds beside them, in ``<runs>/<dataset>/<method>/``:
    ``curve.csv`` (train) and ``ladder.csv`` (sample) with a seed column, as are ``score/fid_ladder.csv``
    (images) and ``score/guidance.csv`` (a class-conditional run's guidance scales); ``metrics.json`` (score),
    the DVC metrics: the science only (see ``science``); and ``score/summary.json``: every metric's
    mean and std over seeds, and each seed's values. Timings stay in the seeds' ``log/``.
    """
    folder = Path(runs_dir) / dataset / method
    seeds = params.pipeline.seeds
    workers = 1 if launched() else min(params.pipeline.workers, len(seeds))  # under torchrun the ranks share each seed
    jobs = [
        (stage, run_for(params, dataset, method, seed), str(data_dir), str(runs_dir), seed == seeds[0])
        for seed in seeds
    ]
    check_inputs(stage, [job[1] for job in jobs], data_dir, runs_dir)
    if "DVC_STAGE" in os.environ:  # run by dvc repro; the jobs' configs have imported every component
        check_plugin_deps(os.environ["DVC_STAGE"], params, Path(os.environ.get("DVC_ROOT", ".")) / "dvc.yaml")
    for out in _output_folders(stage, folder, [RunFiles.of(runs_dir, job[1]) for job in jobs]):
        artifacts.ensure_writable(out, create=False)  # every folder this stage writes, before any work
    start = time.perf_counter()
    log.info("%s %s/%s: seeds %s, %d worker process(es)", stage, dataset, method, seeds, workers)
    if workers > 1:
        from fmexp.runtime.processes import run_in_processes

        run_in_processes(_run_seed, jobs, workers)
    else:
        for job in jobs:
            _run_seed(*job)
    if not world().main:
        return
    per_seed = {seed: RunFiles.of(runs_dir, job[1]) for seed, job in zip(seeds, jobs, strict=False)}
    if stage == "train":  # every seed's curve in one file: a DVC plot
        _concat_csv(folder / "curve.csv", {s: f.curve for s, f in per_seed.items()})
    elif stage == "sample":
        _concat_csv(folder / "ladder.csv", {s: f.ladder for s, f in per_seed.items()})
    elif stage == "score":
        for name in ("fid_ladder", "guidance"):  # images; a class-conditional run's guidance scales
            if all(getattr(f, name).exists() for f in per_seed.values()):
                _concat_csv(folder / "score" / f"{name}.csv", {s: getattr(f, name) for s, f in per_seed.items()})
        values = {str(s): artifacts.read_json(f.metrics) for s, f in per_seed.items()}
        summary = summarize(values)
        artifacts.write_json(folder / "score" / "summary.json", summary)
        artifacts.write_json(folder / "metrics.json", science(summary))
    log.info("%s %s/%s: done in %.1f s", stage, dataset, method, time.perf_counter() - start)


def summarize(values: dict[str, dict[str, float | str | None]]) -> dict[str, dict]:
    """Each numeric metric's mean and std (ddof 1; 0 for one seed) over seeds, and each seed's values.
    A metric that some seed has as null (``metrics.json`` gives the reason) has a null mean and std."""
    seeds = list(values.values())
    numeric = [k for k, v in seeds[0].items() if not isinstance(v, str)]
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for k in numeric:
        column = [m[k] for m in seeds]
        if any(v is None for v in column):
            mean[k] = std[k] = None
            continue
        x = np.array(column, dtype=float)
        mean[k], std[k] = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return {"mean": mean, "std": std, "seeds": values}


def science(summary: dict[str, dict]) -> dict[str, dict[str, float]]:
    """The DVC metrics of one run: the paper's numbers, as mean and std over seeds. For 2-D data the
    NLL (nats), its standard error over points and the sample distance under its own name (``w2``);
    for images bits/dim, its standard error, FID and FID∞ (where the samples allow its fit); for both
    the NFE of sampling and of the NLL; for a pair its W2s, NPE and NFE (``fmexp.flow.units.SCORED``).
    No timings and no per-seed values: ``dvc metrics diff`` and ``dvc exp show`` compare science."""
    first = next(iter(summary["seeds"].values()))
    out = {}
    kind = "pair" if "npe" in first else "image" if "bpd" in first else "reflow" if "straightness" in first else "flat"
    for key in [k for k in dvc_metrics(kind) if k in summary["mean"]]:
        name = str(first["distance_name"]) if key == "distance" else key
        out[name] = (
            {"mean": summary["mean"][key]}
            if key.endswith("_se")
            else {"mean": summary["mean"][key], "std": summary["std"][key]}
        )
    return out


UPSTREAM = {"reflow": (), "train": (), "sample": ("train",), "score": ("train", "sample")}
"""The stages whose outputs each stage reads (besides ``data/<dataset>.pt``)."""


def _output_folders(stage: str, folder: Path, runs: list[RunFiles]) -> list[Path]:
    """The folders a stage writes: the run's own, each seed's ``<stage>/<seed>/`` and its log's, and
    for training the checkpoints' and the live curves', for scoring the summary's."""
    extra = {
        "train": [runs[0].root / "checkpoints", *(r.live for r in runs)],
        "score": [folder / "score"],
    }.get(stage, [])
    return [folder, *(r.stage(stage) for r in runs), *(r.log(stage).parent for r in runs), *extra]


def check_inputs(stage: str, runs: list[RunConfig], data_dir: str | Path, runs_dir: str | Path) -> None:
    """Before any work: every file the stage reads exists, or ``ConfigError`` names the first missing
    one and the command that writes it."""
    run = runs[0]
    prepared = data_file(data_dir, run.dataset)
    if not prepared.exists():
        raise ConfigError(
            f"{stage} needs {prepared}, which does not exist: run `python -m fmexp prepare"
            f" --dataset {run.dataset}` first (or `dvc repro prepare-{run.dataset}`)"
        )
    for r in runs:  # a reflow round reads the previous round's model, and trains on its own couples
        if r.reflow is not None and stage in ("reflow", "train"):
            files = RunFiles.of(runs_dir, r)
            writers = {files.sibling(r.reflow.previous).model: ("train", r.reflow.previous)}
            if stage == "train":
                writers[files.couples] = ("reflow", r.method_name)
            for needed, (up, method) in writers.items():
                if not needed.exists():
                    raise ConfigError(
                        f"{stage} needs {needed}, which does not exist: run `python -m fmexp {up} --dataset"
                        f" {r.dataset} --method {method}` first (or `dvc repro {up}-{r.dataset}-{method}`)"
                    )
    for up in UPSTREAM[stage]:
        for r in runs:
            files = RunFiles.of(runs_dir, r)
            needed = {"train": files.model, "sample": files.samples}[up]
            if not needed.exists():
                raise ConfigError(
                    f"{stage} needs {needed}, which does not exist: run `python -m fmexp {up} --dataset {r.dataset}"
                    f" --method {r.method_name}` first (or `dvc repro {up}-{r.dataset}-{r.method_name}`)"
                )


def _run_seed(stage: str, run: RunConfig, data_dir: str, runs_dir: str, first: bool) -> None:
    """One stage for one seed (a top-level function, so that worker processes can run it); the
    ``first`` seed's score also draws the density grid."""
    start = time.perf_counter()
    data = load_prepared(data_dir, run.dataset)
    stage_fn = getattr(
        importlib.import_module(f"fmexp.pipeline.stages.{stage}"), f"{stage}_run"
    )  # only this stage's code is loaded
    try:
        stage_fn(
            run,
            data,
            RunFiles.of(runs_dir, run),
            **({"data_dir": data_dir, "density": first} if stage == "score" else {}),
        )
    except (SolverError, TrainingDiverged) as e:
        raise RunFailed(f"{stage} {run.dataset}/{run.method_name} seed {run.seed}: {e}") from e
    log.info(
        "%s %s/%s seed %d: done in %.1f s", stage, run.dataset, run.method_name, run.seed, time.perf_counter() - start
    )


def _concat_csv(path: Path, sources: dict[int, Path]) -> None:
    import pandas as pd

    frames = [pd.read_csv(p).assign(seed=s) for s, p in sources.items() if p.stat().st_size > 1]
    artifacts.write_csv(path, pd.concat(frames, ignore_index=True).to_dict("records") if frames else [])
