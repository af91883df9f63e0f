"""The sample stage: one seed's dopri5 samples, trajectories and NFE ladder."""

from __future__ import annotations

import statistics
import time

import torch

from fmexp import artifacts
from fmexp.config import RunConfig
from fmexp.data import Dataset
from fmexp.layout import RunFiles
from fmexp.metrics import sliced_wasserstein
from fmexp.ode import SOLVERS, chunks, integrate
from fmexp.plan import Plan, resolve
from fmexp.training import load_model

__all__ = ["sample_run", "load_trained"]


def load_trained(run: RunConfig, data: Dataset, files: RunFiles) -> tuple[Plan, torch.nn.Module]:
    """The run's decisions and its trained (EMA) network, on the run's device; ``ConfigError`` if the
    network was trained for fewer than ``train.steps`` steps."""
    plan = resolve(run, data)
    return plan, load_model(files.model, map_location=plan.device, steps=run.train.steps)


def sample_run(run: RunConfig, data: Dataset, files: RunFiles) -> dict[str, float]:
    """Sample with dopri5 at ``sample.rtol``/``atol`` and with each fixed-step solver at the NFE ladder (Fig. 7).

    Writes ``samples.pt`` (samples; a few trajectories from a separate solve, so that saving them
    does not change the NFE; the fixed-step samples of the ladder, keyed ``solver:steps``),
    ``sample.json`` (NFE, time) and ``ladder.csv``: per solver and NFE budget, the mean distance of
    the endpoints to the dopri5 endpoints from the same noise (the paper's error against an
    accurate solve), and the sliced W2 distance to the held-out data.

    Each solve runs in chunks of ``sample.batch_size`` samples, so peak memory is bounded by the chunk,
    not by ``n_samples``; the NFE of an adaptive solve is then the mean over chunks.
    """
    plan, model = load_trained(run, data, files)
    method, device = plan.method, plan.device
    v = method.velocity(model)
    gen = torch.Generator(device=device).manual_seed(plan.streams.sampling)
    parts = chunks(run.sample.n_samples, run.sample.batch_size)  # the noise is drawn chunk by chunk and kept on the host
    x_0 = [method.sample_source((part.stop - part.start, *data.train.shape[1:]), gen, device).cpu() for part in parts]
    adaptive = SOLVERS[run.sample.method].adaptive
    solve = {"method": run.sample.method, **run.sample.tolerances, "steps": None if adaptive else run.sample.steps}

    def solve_all(**kwargs: object) -> tuple[torch.Tensor, float]:
        """Every chunk's endpoints (on the host) and the mean NFE over chunks."""
        results = [integrate(v, x.to(device), **kwargs) for x in x_0]
        return torch.cat([r.x.cpu() for r in results]), statistics.mean(r.nfe for r in results)

    with torch.no_grad():
        start = time.perf_counter()
        samples, nfe = solve_all(**solve)
        seconds = time.perf_counter() - start
        n_traj = min(run.sample.n_trajectories, len(x_0[0]) if x_0 else 0)
        save_at = [i / 16 for i in range(1, 16)] if adaptive else None
        traj = integrate(v, x_0[0][:n_traj].to(device), **solve, save_at=save_at).xs.cpu() if n_traj else x_0[0][:0]
        test = data.model_space(data.test, torch.Generator().manual_seed(plan.streams.reference))
        ladder, ladder_samples = [], {}
        for name in run.sample.fixed_solvers:
            for budget in run.sample.nfe_ladder:
                steps = budget // SOLVERS[name].evals_per_step
                if steps < 1:
                    continue
                x, ladder_nfe = solve_all(method=name, steps=steps)
                ladder_samples[f"{name}:{steps}"] = x  # for Fig. 4's few-NFE panels and FID against NFE
                ladder.append({"solver": name, "steps": steps, "nfe": ladder_nfe, "error": float((x - samples).flatten(1).norm(dim=1).mean()),
                               "distance": sliced_wasserstein(x, test, n_projections=64, seed=run.seed)})
    artifacts.save_torch(files.samples, {"samples": samples, "trajectories": traj, "ladder": ladder_samples})
    artifacts.write_csv(files.ladder, ladder)
    summary = {"nfe": nfe, "seconds": seconds, "method": run.sample.method, **run.sample.tolerances}
    artifacts.write_json(files.sample_info, summary)
    return summary
