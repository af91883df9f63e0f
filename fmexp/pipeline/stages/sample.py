"""The sample stage: one seed's dopri5 samples, trajectories and NFE ladder."""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import torch
from torch import Tensor

from fmexp.config.plan import held_out
from fmexp.config.schema import RunConfig
from fmexp.data.datasets import Dataset
from fmexp.flow.guidance import Guided, proportional_labels
from fmexp.flow.metrics import sliced_wasserstein
from fmexp.flow.ode import Field, Rung, chunks, get_solver, integrate
from fmexp.pipeline.layout import RunFiles
from fmexp.registry import resolve
from fmexp.runtime import artifacts
from fmexp.training.state import load_trained

__all__ = ["sample_run", "requested_labels"]


def sample_run(run: RunConfig, data: Dataset, files: RunFiles) -> dict[str, Any]:
    """Sample with dopri5 at ``sample.rtol``/``atol`` and with each fixed-step solver and time grid at the
    NFE ladder (Fig. 7): a budget of n NFE is n / (evaluations per step) steps, where that is whole.

    Writes ``samples.pt`` (samples; a few trajectories from a separate solve, so that saving them
    does not change the NFE; the fixed-step samples of the ladder, keyed ``solver:steps``),
    ``sample.json`` (NFE, time) and ``ladder.csv``: per solver, grid and NFE budget, the mean distance of
    the endpoints to the dopri5 endpoints from the same noise (the paper's error against an
    accurate solve), and the sliced W2 distance to the held-out data.

    The solves run chunk by chunk, ``sample.batch_size`` samples each: the noise is drawn per chunk,
    and a chunk's endpoints are stored as ``Dataset.stored`` keeps them (image samples as uint8
    levels) before the next chunk starts, so peak memory is bounded by the chunk, not by
    ``n_samples``. The NFE of an adaptive solve is then the mean over chunks. The ladder runs on the
    first ``sample.ladder_samples`` samples. A pair's samples start from its source's held-out split, a
    random subset without replacement (all of it at ``n_samples = pairs.<p>.n_test``).

    A class-conditional model (``train.label_dropout`` set) samples each requested label, drawn in the
    training split's class proportions (``proportional_labels``; ``samples.pt``'s ``labels``), at
    ``w = 0``; the ladder's samples also run at each guidance scale of ``sample.guidance`` with
    ``sample.guidance_sampler`` at ``sample.guidance_nfe`` (``guided``, keyed by w).
    """
    plan, model = load_trained(run, data, files.model)
    method, device = held_out(plan.method, data), plan.device
    labels = requested_labels(run, data)

    def field(part: slice, w: float = 0.0) -> Field:
        """The field of the samples ``part``: guided towards their labels for a conditional model."""
        return method.velocity(model if labels is None else Guided(model, labels[part].to(device), data.num_classes, w))

    gen = torch.Generator(device=device).manual_seed(plan.streams.sampling)
    adaptive = get_solver(run.sample.method).adaptive
    tol = run.sample.tolerances
    steps = None if adaptive else run.sample.steps
    solve = functools.partial(integrate, method=run.sample.method, rtol=tol["rtol"], atol=tol["atol"], steps=steps)
    rungs = [
        Rung(name, grid, get_solver(name).steps_for(budget))
        for name in run.sample.fixed_solvers
        for grid in run.sample.grids
        for budget in run.sample.nfe_ladder
        if get_solver(name).steps_for(budget) >= 1
    ]
    guided_rung = run.sample.guidance_rung
    guided: dict[float, list[Tensor]] = {w: [] for w in run.sample.guidance} if labels is not None else {}
    grids = {r: resolve("time_grid", r.grid)(method.path, r.steps) for r in rungs + ([guided_rung] if guided else [])}
    n_ladder = (
        run.sample.n_samples
        if run.sample.ladder_samples is None
        else min(run.sample.ladder_samples, run.sample.n_samples)
    )
    samples: list[Tensor] = []
    nfes: list[int] = []
    seconds, traj = 0.0, None
    ladder: dict[Rung, dict[str, list[Any]]] = {rung: {"x": [], "error": [], "nfe": []} for rung in rungs}
    with torch.no_grad():
        for part in chunks(run.sample.n_samples, run.sample.batch_size):
            x_0 = method.sample_source((part.stop - part.start, *data.train.shape[1:]), gen, device)
            start = time.perf_counter()
            result = solve(field(part), x_0)
            seconds += time.perf_counter() - start
            samples.append(data.stored(result.x.cpu()))
            nfes.append(result.nfe)
            if traj is None:
                n_traj = min(run.sample.n_trajectories, len(x_0))
                save_at = [i / 16 for i in range(1, 16)] if adaptive else None
                head = slice(part.start, part.start + n_traj)
                traj = solve(field(head), x_0[:n_traj], save_at=save_at).xs.cpu() if n_traj else x_0[:0].cpu()
            k = max(0, min(part.stop, n_ladder) - part.start)
            first = slice(part.start, part.start + k)
            for rung, kept in ladder.items() if k else ():
                x = integrate(field(first), x_0[:k], method=rung.solver, steps=rung.steps, grid=grids[rung])
                kept["x"].append(data.stored(x.x.cpu()))  # for Fig. 4's few-NFE panels and FID against NFE
                kept["error"].append((x.x - result.x[:k]).flatten(1).norm(dim=1).cpu())
                kept["nfe"].append(x.nfe)
            for w, kept_w in guided.items() if k else ():
                rung = guided_rung
                x = integrate(field(first, w), x_0[:k], method=rung.solver, steps=rung.steps, grid=grids[rung])
                kept_w.append(data.stored(x.x.cpu()))
    test = data.model_space(data.test, torch.Generator().manual_seed(plan.streams.reference))
    ladder_samples = {rung.key: torch.cat(kept["x"]) for rung, kept in ladder.items()}
    rows = [
        {
            "solver": rung.solver,
            "grid": rung.grid,
            "steps": rung.steps,
            "nfe": statistics.mean(kept["nfe"]),
            "error": float(torch.cat(kept["error"]).mean()),
            "distance": sliced_wasserstein(
                data.unstored(ladder_samples[rung.key]), test, n_projections=64, seed=run.seed
            ),
        }
        for rung, kept in ladder.items()
    ]
    state = {"samples": torch.cat(samples), "trajectories": traj, "ladder": ladder_samples, "levels": data.levels}
    summary: dict[str, Any] = {"nfe": statistics.mean(nfes), "method": run.sample.method, **run.sample.tolerances}
    if labels is not None:
        state.update(labels=labels, guided={f"{w:g}": torch.cat(x) for w, x in guided.items()})
        fields = {f"{w:g}": Guided(model, labels, data.num_classes, w) for w in guided}  # what each w's NFE costs
        summary["guidance"] = {
            "sampler": guided_rung.key,
            "nfe": guided_rung.nfe,
            "samples": n_ladder,
            "network_calls_per_nfe": {key: g.network_evaluations for key, g in fields.items()},
            "rows_per_call": {key: g.rows_per_call for key, g in fields.items()},
        }
    artifacts.save_torch(files.samples, state)
    artifacts.write_csv(files.ladder, rows)
    artifacts.write_json(files.sample_info, summary)
    artifacts.write_json(files.log("sample"), {"seconds": seconds})
    return {**summary, "seconds": seconds}


def requested_labels(run: RunConfig, data: Dataset) -> Tensor | None:
    """The labels that a class-conditional run's ``sample.n_samples`` samples request, in the training
    split's class proportions (None for an unconditional run)."""
    if run.train.label_dropout is None:
        return None
    assert data.train_labels is not None  # validate_run: a conditional run's data has labels
    return proportional_labels(data.train_labels, run.sample.n_samples, data.num_classes)
