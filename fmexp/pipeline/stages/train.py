"""The train stage: one seed's model, curve and record."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from fmexp.config.load import to_plain
from fmexp.config.plan import Plan, resolve, training_key
from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.flow.guidance import ClassLabels
from fmexp.flow.likelihood import log_likelihood
from fmexp.flow.methods import Method
from fmexp.flow.ode import integrate
from fmexp.flow.reflow import PairedSource
from fmexp.networks.models import build_model
from fmexp.pipeline.layout import RunFiles
from fmexp.pipeline.live import LiveCurve
from fmexp.runtime import artifacts
from fmexp.training.distributed import process_group
from fmexp.training.launch import World
from fmexp.training.loop import TrainResult, train
from fmexp.training.state import load_model

__all__ = ["OnEval", "train_run"]

OnEval = Callable[[dict[str, float]], None]
log = logging.getLogger(__name__)


def _curve_columns(
    run: RunConfig, method: Method, test: Tensor, divergence: str, gen_seed: int, on_eval: OnEval | None
) -> Callable[[int, torch.nn.Module], dict[str, float]]:
    """NLL (with one probe where ``divergence`` is Hutchinson; none for a data source, which has no
    density) and dopri5 NFE on a few held-out points at each eval: the convergence curves (Fig. 10)."""
    points, tol = test[: run.train.curve_points], run.train.curve_tol

    def evaluate(step: int, model: torch.nn.Module) -> dict[str, float]:
        row: dict[str, float] = {}
        if len(points):
            v = method.velocity(model)
            if method.source is None:  # a data source has no density: no NLL
                ll = log_likelihood(
                    v,
                    points,
                    divergence=divergence,
                    prior_std=method.prior_std,
                    rtol=tol,
                    atol=tol,
                    generator=torch.Generator(device=points.device).manual_seed(gen_seed),
                )
                row["nll"] = float(-ll.logp.mean())
            with torch.no_grad():
                x_0 = method.sample_source(
                    tuple(points.shape), torch.Generator(device=points.device).manual_seed(gen_seed), points.device
                )
                row["nfe"] = float(integrate(v, x_0, rtol=tol, atol=tol).nfe)
        if on_eval is not None:
            on_eval({"step": step, **row})
        return row

    return evaluate


def train_run(
    run: RunConfig, data: Dataset, files: RunFiles, *, on_eval: OnEval | None = None, progress: bool | None = None
) -> TrainResult:
    """Train one seed; write ``model.pt`` (EMA weights, spec, resumable state), ``curve.csv`` and
    ``train.json`` (the run's config in effect and what ``resolve`` decided); its wall time, speed and
    resumed step go to ``files.log("train")``.

    Every ``train.checkpoint_every`` steps the state goes to ``files.checkpoint(training_key(run))``,
    outside the folder that DVC deletes before a rerun. A rerun of the same config (a killed or
    preempted run, then ``dvc repro``) resumes from it, bit for bit on CPU; a checkpoint of any other
    config of this seed is never resumed, and is deleted. The finished run's checkpoint becomes
    ``model.pt``.

    Under torchrun (``train.nproc``), every rank trains and rank 0 alone writes.
    """
    plan = resolve(run, data)
    key = training_key(run)
    checkpoint = files.checkpoint(key)
    with process_group(plan.device) as ranks:
        if ranks.main:
            for stale in [
                *checkpoint.parent.glob(f"{run.seed}-*.pt"),
                *checkpoint.parent.glob(f".{run.seed}-*.tmp"),
            ]:  # .tmp: a write cut by a kill
                if stale != checkpoint:
                    log.info(
                        "train %s/%s seed %d: deleting %s, the checkpoint of another config",
                        run.dataset,
                        run.method_name,
                        run.seed,
                        stale,
                    )
                    stale.unlink()
        live = LiveCurve(files.live) if ranks.main else None
        try:
            start = _reflow_start(run, files, plan.device)
            result = _train(run, data, plan, checkpoint, ranks, on_eval, progress, live, start)
        finally:
            if live is not None:
                live.close()
    if not ranks.main:
        return result
    resumed_from = run.train.steps - result.steps_run
    files.model.parent.mkdir(parents=True, exist_ok=True)
    os.replace(checkpoint, files.model)  # the same file system: the finished state appears whole, or not at all
    artifacts.write_csv(files.curve, result.rows)
    artifacts.write_json(
        files.train_info,
        {
            "steps": run.train.steps,
            "device": str(plan.device),
            "processes": ranks.size,
            "run": to_plain(run),
            "plan": {**plan.record(), "training_key": key},
        },
    )
    artifacts.write_json(
        files.log("train"),
        {"seconds": result.seconds, "steps_per_second": result.steps_per_second, "resumed_from": resumed_from},
    )
    return result


def _reflow_start(
    run: RunConfig, files: RunFiles, device: torch.device
) -> tuple[PairedSource, dict[str, torch.Tensor]] | None:
    """A reflow round's couples (``reflow`` stage) and the EMA weights of the round before (Liu et al. 2022,
    Alg. 1: round k is warm-started from round k-1); None for any other run."""
    if run.reflow is None:
        return None
    couples = artifacts.load_torch(files.couples)
    previous = load_model(files.sibling(run.reflow.previous).model, map_location=device)
    return PairedSource(couples["x_0"].to(device), couples["x_1"].to(device)), previous.state_dict()


def _train(
    run: RunConfig,
    data: Dataset,
    plan: Plan,
    checkpoint: Path,
    ranks: World,
    on_eval: OnEval | None,
    progress: bool | None,
    live: LiveCurve | None,
    start: tuple[PairedSource, dict[str, torch.Tensor]] | None = None,
) -> TrainResult:
    """The model built and trained from the run's seeds (resumed from ``checkpoint`` where it exists); with
    ``start``, a reflow round's couples and the weights it starts from."""
    train_data, test = data.train.to(plan.device), data.test.to(plan.device)
    torch.manual_seed(plan.streams.training)
    model = build_model(plan.model_spec).to(plan.device)
    method = plan.method
    if start is not None:
        method = dataclasses.replace(method, couples=start[0])
        model.load_state_dict(start[1])
    curve_points = data.model_space(test, torch.Generator(device=plan.device).manual_seed(plan.streams.curve_points))
    return train(
        method,
        model,
        train_data,
        run.train,
        seed=plan.streams.training,
        val_data=test,
        evaluate=_curve_columns(run, method, curve_points, plan.curve_divergence, plan.streams.curve, on_eval),
        checkpoint=checkpoint,
        resume=True,
        model_spec=plan.model_spec,
        progress=progress,
        transform=data.model_space if plan.images else None,
        world=ranks,
        on_curve=live,
        labels=class_labels(run, data, plan.device),
    )


def class_labels(run: RunConfig, data: Dataset, device: torch.device) -> ClassLabels | None:
    """A class-conditional run's labels (``train.label_dropout`` set; ``validate_run`` checked that the data
    has them); None for an unconditional one. The curve's NLL and NFE columns are the null label's."""
    if run.train.label_dropout is None:
        return None
    assert data.train_labels is not None and data.test_labels is not None
    return ClassLabels(
        data.train_labels.to(device), data.test_labels.to(device), data.num_classes, run.train.label_dropout
    )
