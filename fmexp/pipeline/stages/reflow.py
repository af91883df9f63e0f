"""The reflow stage: one seed's couples for a reflow round (Liu et al. 2022, Alg. 1)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from fmexp.config.plan import resolve
from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.flow.methods import Method
from fmexp.flow.ode import Field
from fmexp.flow.reflow import reflow_pairs
from fmexp.pipeline.layout import RunFiles
from fmexp.runtime import artifacts
from fmexp.training.state import load_model

__all__ = ["reflow_run", "previous_flow"]


def previous_flow(run: RunConfig, data: Dataset, files: RunFiles) -> tuple[Method, Field]:
    """The method and trained field of the flow a reflow round came from (round k - 1; for round 1 the
    reflowed cell's own model), from its ``model.pt``."""
    assert run.reflow is not None  # a round's run (run_for)
    previous = dataclasses.replace(run, method_name=run.reflow.previous, method=run.reflow.previous_method, reflow=None)
    plan = resolve(previous, data)
    model = load_model(files.sibling(run.reflow.previous).model, map_location=plan.device)
    return plan.method, plan.method.velocity(model)


def reflow_run(run: RunConfig, data: Dataset, files: RunFiles) -> dict[str, Any]:
    """Draw ``reflow.n_pairs`` noise points from the round's own stream (``Streams.reflow``, never the
    sample stage's: no model is scored on the noise it trained on) and solve the previous flow from each
    with dopri5 at ``sample.rtol``/``atol``, in chunks of ``sample.batch_size``. Writes ``pairs.pt``
    (``x_0``, ``x_1``), ``reflow.json`` (their count and the solves' mean NFE) and the solves' seconds to
    the log."""
    assert run.reflow is not None
    method, v = previous_flow(run, data, files)
    plan = resolve(run, data)
    gen = torch.Generator(device=plan.device).manual_seed(plan.streams.reflow)
    x_0 = method.sample_source((run.reflow.n_pairs, *data.train.shape[1:]), gen, plan.device)
    tol = run.sample.tolerances
    pairs = reflow_pairs(v, x_0, rtol=tol["rtol"], atol=tol["atol"], batch_size=run.sample.batch_size)
    artifacts.save_torch(files.couples, {"x_0": pairs.x_0.cpu(), "x_1": pairs.x_1.cpu()})
    info = {"n_pairs": run.reflow.n_pairs, "nfe": pairs.nfe, "of": run.reflow.previous, **tol}
    artifacts.write_json(files.couples_info, info)
    artifacts.write_json(files.log("reflow"), {"seconds": pairs.seconds})
    return {**info, "seconds": pairs.seconds}
