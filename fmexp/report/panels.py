"""The paper's Fig. 4 for 2-D data: per method, the model's density p_t along the path, samples of a
fixed-step solver at a few NFE beside dopri5's, and ODE trajectories, on one set of axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from fmexp.config.schema import Params
from fmexp.flow.ode import Rung
from fmexp.pipeline.layout import RunFiles
from fmexp.report.render import Figure, png
from fmexp.runtime import artifacts

__all__ = ["fig4_panels"]


def _few_nfe(ladder: dict[str, Any], k: int = 3) -> list[tuple[str, int]]:
    """The ``k`` smallest step counts of the midpoint solver on the uniform grid in a sample ladder (else of
    its first solver)."""
    keys = [(r.solver, r.steps) for r in map(Rung.parse, ladder) if r.grid == "uniform"]
    solver = "midpoint" if any(n == "midpoint" for n, _ in keys) else (keys[0][0] if keys else "")
    return sorted((n, s) for n, s in keys if n == solver)[:k] if solver else []


def _show_density(ax: plt.Axes, logp: Any, extent: list[float], **kwargs: Any) -> None:
    """``exp(logp)`` on ``extent``, its colour scale to the 99.5th percentile: one sharp peak must not
    darken the rest."""
    p = np.exp(logp.numpy())
    box = (extent[0], extent[1], extent[2], extent[3])
    ax.imshow(p, origin="lower", extent=box, vmin=0, vmax=np.quantile(p, 0.995), **kwargs)


def fig4_panels(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    """The paper's Fig. 4, per method (first seed): the model's density p_t at several times t, samples
    of a fixed-step solver at a few NFE beside the dopri5 samples, and ODE trajectories; every panel on
    the density grid's axes."""
    figs = []
    seed = params.pipeline.seeds[0]
    for dataset in params.pipeline.datasets:
        files = {m: RunFiles(runs_dir / dataset / m, seed) for m in params.methods_of(dataset)}
        loaded = {
            m: (artifacts.load_torch(f.samples), artifacts.load_torch(f.density))
            for m, f in files.items()
            if f.samples.exists() and f.density.exists()
        }
        loaded = {m: (s, d) for m, (s, d) in loaded.items() if "logp" in d}
        if not loaded:
            continue
        times = next(iter(loaded.values()))[1]["t"].tolist()
        first = next(iter(loaded))
        few = _few_nfe(loaded[first][0].get("ladder", {}))
        titles = (
            [f"density, t = {t:g}" for t in times]
            + [f"{n}, NFE {Rung(n, 'uniform', s).nfe}" for n, s in few]
            + ["dopri5", "trajectories"]
        )
        fig, axes = plt.subplots(
            len(loaded), len(titles), figsize=(1.9 * len(titles), 2.0 * len(loaded)), squeeze=False
        )
        for row, (method, (samples, d)) in zip(axes, loaded.items(), strict=False):
            extent = [float(d["x"][0]), float(d["x"][-1]), float(d["y"][0]), float(d["y"][-1])]
            lims = [extent[:2], extent[2:]]
            for ax, logp in zip(row, d["logp"], strict=False):
                _show_density(ax, logp, extent, cmap="viridis")
            clouds = [samples["ladder"].get(f"{n}:{s}") for n, s in few] + [samples["samples"]]
            for ax, x in zip(row[len(times) :], clouds, strict=False):
                if x is None:  # not in this method's ladder (a reflow round samples Euler only)
                    ax.set_axis_off()
                    continue
                x = x.numpy()
                ax.hist2d(x[:, 0], x[:, 1], bins=40, range=lims, cmap="viridis")
            ax = row[-1]
            _show_density(ax, d["logp"][-1], extent, cmap="Greys", alpha=0.5)
            traj = samples["trajectories"].numpy()
            for i in range(traj.shape[1]):
                ax.plot(traj[:, i, 0], traj[:, i, 1], lw=1)
                ax.scatter(traj[-1, i, 0], traj[-1, i, 1], s=8)
            ax.set_xlim(lims[0]), ax.set_ylim(lims[1])
            row[0].set_ylabel(method)
        for ax, title in zip(axes[0], titles, strict=False):
            ax.set_title(title, fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([]), ax.set_aspect("equal")
        figs.append(
            Figure(
                f"{dataset}: densities along the path, samples and trajectories",
                f"Seed {seed}; the paper's Fig. 4 layout. Left: the model's density p_t at each time t (exact"
                " divergence, dopri5 at 1e-4). Then samples from the same noise by "
                f"{few[0][0] if few else 'a fixed-step solver'}"
                " at a few NFE, by dopri5, and the ODE trajectories of a few of them over the t = 1 density;"
                " every panel on the same axes.",
                f"panels_{dataset}",
                png(fig, fig_dir / f"panels_{dataset}.png"),
            )
        )
    return figs
