"""The sample stage: one seed's dopri5 samples, trajectories and NFE ladder."""

from __future__ import annotations

import time

import torch

from fmexp import artifacts
from fmexp.config import RunConfig
from fmexp.data import Dataset
from fmexp.layout import RunFiles
from fmexp.metrics import sliced_wasserstein
from fmexp.ode import SOLVERS, integrate
from fmexp.plan import Plan, resolve
from fmexp.training import load_model

__all__ = ["sample_run", "load_trained"]


def load_trained(run: RunConfig, data: Dataset, files: RunFiles) -> tuple[Plan, torch.nn.Module]:
    """The run's decisions and its trained (EMA) network, on the run's device."""
    plan = resolve(run, data)
    return plan, load_model(files.model, map_location=plan.device)


def sample_run(run: RunConfig, data: Dataset, files: RunFiles) -> dict[str, float]:
    """Sample with dopri5 at ``sample.rtol``/``atol`` and with each fixed-step solver at the NFE ladder (Fig. 7).

    Writes ``samples.pt`` (samples; a few trajectories from a separate solve, so that saving them
    does not change the NFE; the fixed-step samples of the ladder, keyed ``solver:steps``), ``sample.json`` (NFE, time) and ``ladder.csv``: per solver and
    NFE budget, the mean distance of the endpoints to the dopri5 endpoints from the same noise (the
    paper's error against an accurate solve), and the sliced W2 distance to the held-out data.
    """
    plan, model = load_trained(run, data, files)
    method, device = plan.method, plan.device
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(plan.streams.sampling)
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
        test = data.model_space(data.test, torch.Generator().manual_seed(plan.streams.reference)).to(device)
        ladder, ladder_samples = [], {}
        for name in run.sample.fixed_solvers:
            for budget in run.sample.nfe_ladder:
                steps = budget // SOLVERS[name].evals_per_step
                if steps < 1:
                    continue
                res = integrate(v, x_0, method=name, steps=steps)
                ladder_samples[f"{name}:{steps}"] = res.x.cpu()  # for Fig. 4's few-NFE panels and FID against NFE
                ladder.append({"solver": name, "steps": steps, "nfe": res.nfe,
                               "error": float((res.x - ref.x).flatten(1).norm(dim=1).mean()),
                               "distance": sliced_wasserstein(res.x.cpu(), test.cpu(), n_projections=64, seed=run.seed)})
    artifacts.save_torch(files.samples, {"samples": ref.x.cpu(), "trajectories": traj.cpu(), "ladder": ladder_samples})
    artifacts.write_csv(files.ladder, ladder)
    summary = {"nfe": ref.nfe, "seconds": seconds, "method": run.sample.method, **run.sample.tolerances}
    artifacts.write_json(files.sample_info, summary)
    return summary
