"""Tables and figures in the paper's layout, written to ``reports/`` and one self-contained HTML page.

Tables (pandas): one per dataset, methods by (NLL, sample distance, NFE), mean +- std over seeds,
the best mean in bold where a Welch t-test across seeds separates it from every other method; also CSV, Markdown and LaTeX under ``reports/tables/``. Figures (seaborn),
also PNG under ``reports/figures/``: convergence curves, sample quality against NFE for the
fixed-step solvers (Fig. 7), the paper's Fig. 4 panels (density, samples, trajectories), and for
each sweep its history, parameter importances and Pareto front.
"""

from __future__ import annotations

import base64
import io
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from fmexp import artifacts  # noqa: E402
from fmexp.config import Params, to_plain  # noqa: E402
from fmexp.layout import RunFiles  # noqa: E402

__all__ = ["collect_metrics", "welch_p", "method_table", "write_plot_data", "build_report"]

COLUMNS = {"nll": "NLL (nats)", "distance": "distance", "nfe": "NFE"}
IMAGE_COLUMNS = {"bpd": "NLL (bits/dim)", "fid": "FID", "nfe": "NFE"}  # the paper's Table 1
PACKAGES = ("fmexp", "torch", "torchdiffeq", "numpy", "scipy", "POT", "optuna", "hydra-core", "omegaconf", "dvc", "pandas", "seaborn", "matplotlib")


@dataclass
class Figure:
    title: str
    caption: str
    name: str
    data_uri: str


def _folders(params: Params, runs_dir: Path):
    for dataset in params.pipeline.datasets:
        for method in params.pipeline.methods:
            yield dataset, method, runs_dir / dataset / method


def collect_metrics(params: Params, runs_dir: Path) -> pd.DataFrame:
    """One row per scored seed: dataset, method, seed and every metric (from each seed's ``metrics.json``)."""
    rows = [{"dataset": d, "method": m, "seed": seed, **artifacts.read_json(files.metrics)}
            for d, m, folder in _folders(params, runs_dir) for seed in params.pipeline.seeds
            if (files := RunFiles(folder, seed)).metrics.exists()]
    return pd.DataFrame(rows)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` (values over seeds) have equal means;
    NaN where either has fewer than two values."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(ttest_ind(a, b, equal_var=False).pvalue)


SIGNIFICANCE = 0.05


def method_table(metrics: pd.DataFrame, dataset: str, methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's layout for one dataset: (numeric frame, display frame with 'mean ± std').

    The numeric frame holds each column's mean and std over seeds and ``<col>_p``: the Welch t-test
    p-value of the best mean (lowest) against this method's. A best mean is bold only where it beats
    every other method at p < 0.05, so a difference within the seed noise is never shown as a win.
    """
    df = metrics[metrics.dataset == dataset]
    columns = IMAGE_COLUMNS if "bpd" in df and df["bpd"].notna().any() else COLUMNS
    order = [m for m in methods if m in set(df.method)]
    stats = df.groupby("method")[list(columns)].agg(["mean", "std"]).reindex(order)
    stats.columns = [f"{c}_{s}" for c, s in stats.columns]
    stats["seeds"] = df.groupby("method").size()
    display = pd.DataFrame(index=stats.index)
    for col, label in columns.items():
        mean, std = stats[f"{col}_mean"], stats[f"{col}_std"].fillna(0.0)
        best = mean.idxmin() if len(mean) else None
        values = {m: df.loc[df.method == m, col].dropna().to_numpy(float) for m in order}
        stats[f"{col}_p"] = [float("nan") if m == best else welch_p(values[best], values[m]) for m in order]
        significant = len(order) > 1 and all(p < SIGNIFICANCE for m, p in zip(order, stats[f"{col}_p"]) if m != best)
        fmt = {"nfe": "{:.0f} ± {:.0f}", "fid": "{:.1f} ± {:.1f}"}.get(col, "{:.3f} ± {:.3f}")
        cells = [fmt.format(a, b) for a, b in zip(mean, std)]
        display[label] = [f"**{c}**" if m == best and significant else c for m, c in zip(stats.index, cells)]
    display.index.name = "method"
    return stats, display


def _png(fig: plt.Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    with artifacts.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _read_csvs(params: Params, runs_dir: Path, name: str) -> pd.DataFrame:
    """The per-method summaries ``curve.csv`` or ``ladder.csv`` (which carry a seed column), stacked."""
    frames = [pd.read_csv(f / name).assign(dataset=d, method=m)
              for d, m, f in _folders(params, runs_dir) if (f / name).exists() and (f / name).stat().st_size > 1]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


PLOT_DATA = {  # reports/plots/<name>.csv: (per-run summary file, the rows' keys, the values averaged over seeds)
    "convergence": ("curve.csv", ["step"], ["val_loss", "nll", "nfe"]),
    "nfe": ("ladder.csv", ["solver", "steps", "nfe"], ["error", "distance"]),
    "fid_nfe": ("score/fid_ladder.csv", ["solver", "steps", "nfe"], ["fid"]),
}


def write_plot_data(params: Params, runs_dir: Path, plot_dir: Path) -> None:
    """The data of ``dvc.yaml``'s top-level plots, which compare methods: one long CSV per figure, each
    row a dataset, method (and solver) and x value, with the mean over seeds."""
    for name, (source, keys, values) in PLOT_DATA.items():
        frame = _read_csvs(params, runs_dir, source)
        if frame.empty:
            continue
        mean = frame.groupby(["dataset", "method", *keys], sort=False)[[v for v in values if v in frame]].mean().reset_index()
        artifacts.write_text(plot_dir / f"{name}.csv", mean.to_csv(index=False))


def _convergence(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    curves = _read_csvs(params, runs_dir, "curve.csv")
    if curves.empty:
        return []
    ys = [c for c in ("val_loss", "nll", "nfe") if c in curves]
    long = curves.melt(id_vars=["dataset", "method", "seed", "step"], value_vars=ys, var_name="quantity")
    g = sns.relplot(data=long, x="step", y="value", hue="method", row="quantity", col="dataset", kind="line",
                    errorbar="sd", facet_kws={"sharey": False, "sharex": False}, height=2.4, aspect=1.5, marker="o")
    for (quantity, _), ax in g.axes_dict.items():
        if quantity == "val_loss":  # fm and sm losses differ in scale by orders of magnitude
            ax.set_yscale("log")
    return [Figure("Convergence", "Validation loss (log scale), held-out NLL (nats) and dopri5 NFE against training step; mean ± sd"
                   " over seeds (cf. the paper's Fig. 10).",
                   "convergence", _png(g.figure, fig_dir / "convergence.png"))]


def _against_nfe(frame: pd.DataFrame, y: str, title: str, caption: str, name: str, fig_dir: Path, *, log_y: bool = False,
                 floor: dict[str, float] | None = None) -> Figure:
    """One panel per dataset of ``y`` against NFE, a line per method and solver (the paper's Fig. 7 layout);
    ``floor`` draws a dashed line per dataset."""
    g = sns.relplot(data=frame, x="nfe", y=y, hue="method", style="solver", col="dataset", kind="line",
                    markers=True, errorbar="sd", height=3, aspect=1.2)
    g.set(xscale="log", yscale="log" if log_y else "linear")
    for dataset, ax in g.axes_dict.items():
        if floor and dataset in floor:
            ax.axhline(floor[dataset], color="0.3", ls="--", lw=1)
    return Figure(title, caption + " Mean ± sd over seeds.", name, _png(g.figure, fig_dir / f"{name}.png"))


def _ladder(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    ladder = _read_csvs(params, runs_dir, "ladder.csv")
    if ladder.empty:
        return []
    return [
        _against_nfe(ladder, "error", "Sampling error against NFE", "Mean distance of fixed-step endpoints to the dopri5 endpoints"
                     " from the same noise (the paper's Fig. 7 measure).", "nfe_error", fig_dir, log_y=True),
        _against_nfe(ladder, "distance", "Sample quality against NFE", "Sliced W2 distance of fixed-step samples to held-out data.",
                     "nfe_quality", fig_dir),
    ]


def _image_grids(params: Params, runs_dir: Path, fig_dir: Path, metrics: pd.DataFrame) -> list[Figure]:
    """A grid of dopri5 samples per method (first seed), for image datasets."""
    figs = []
    seed = params.pipeline.seeds[0]
    for dataset in params.pipeline.datasets:
        files = {m: RunFiles(runs_dir / dataset / m, seed) for m in params.pipeline.methods}
        stored = {m: artifacts.load_torch(f.samples) for m, f in files.items() if f.samples.exists()}
        grids = {m: st["samples"][:64].float() / (st["levels"] - 1) for m, st in stored.items() if st.get("levels")}  # uint8 levels to [0, 1]
        if not grids:
            continue
        fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.2), squeeze=False)
        for ax, (method, x) in zip(axes[0], grids.items()):
            x = x.numpy()
            n, c, h, w = x.shape
            k = int(np.ceil(np.sqrt(n)))
            canvas = np.ones((k * (h + 1), k * (w + 1), c))
            for i in range(n):
                r, q = divmod(i, k)
                canvas[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = x[i].transpose(1, 2, 0)
            ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
            ax.set_title(method), ax.set_axis_off()
        figs.append(Figure(f"{dataset}: samples", f"dopri5 samples, seed {seed}.", f"grid_{dataset}", _png(fig, fig_dir / f"grid_{dataset}.png")))
    fid = _read_csvs(params, runs_dir, "score/fid_ladder.csv")
    if not fid.empty:
        floor = metrics.groupby("dataset")["fid_floor"].mean().dropna().to_dict() if "fid_floor" in metrics else {}
        figs.append(_against_nfe(fid, "fid", "FID against NFE", "FID of fixed-step samples (uint8) against the training split's"
                                 " statistics; dashed: as many real held-out images (the floor).", "fid_nfe", fig_dir, floor=floor))
    return figs


def _few_nfe(ladder: dict[str, Any], k: int = 3) -> list[tuple[str, int]]:
    """The ``k`` smallest step counts of the midpoint solver in a sample ladder (else of its first solver)."""
    keys = [(name, int(steps)) for name, steps in (key.split(":") for key in ladder)]
    solver = "midpoint" if any(n == "midpoint" for n, _ in keys) else (keys[0][0] if keys else "")
    return sorted((n, s) for n, s in keys if n == solver)[:k] if solver else []


def _show_density(ax: plt.Axes, logp: Any, extent: list[float], **kwargs: Any) -> None:
    """``exp(logp)`` on ``extent``, its colour scale to the 99.5th percentile: one sharp peak must not darken the rest."""
    p = np.exp(logp.numpy())
    ax.imshow(p, origin="lower", extent=extent, vmin=0, vmax=np.quantile(p, 0.995), **kwargs)


def _panels(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    """The paper's Fig. 4, per method (first seed): the model's density p_t at several times t, samples
    of a fixed-step solver at a few NFE beside the dopri5 samples, and ODE trajectories; every panel on
    the density grid's axes."""
    figs = []
    seed = params.pipeline.seeds[0]
    for dataset in params.pipeline.datasets:
        files = {m: RunFiles(runs_dir / dataset / m, seed) for m in params.pipeline.methods}
        loaded = {m: (artifacts.load_torch(f.samples), artifacts.load_torch(f.density)) for m, f in files.items()
                  if f.samples.exists() and f.density.exists()}
        loaded = {m: (s, d) for m, (s, d) in loaded.items() if "logp" in d}
        if not loaded:
            continue
        times = next(iter(loaded.values()))[1]["t"].tolist()
        first = next(iter(loaded))
        few = _few_nfe(loaded[first][0].get("ladder", {}))
        nfe = {(r.solver, r.steps): r.nfe for r in pd.read_csv(files[first].ladder).itertuples()} if few else {}
        titles = ([f"density, t = {t:g}" for t in times] + [f"{n}, NFE {nfe[n, s]}" for n, s in few]
                  + ["dopri5", "trajectories"])
        fig, axes = plt.subplots(len(loaded), len(titles), figsize=(1.9 * len(titles), 2.0 * len(loaded)), squeeze=False)
        for row, (method, (samples, d)) in zip(axes, loaded.items()):
            extent = [float(d["x"][0]), float(d["x"][-1]), float(d["y"][0]), float(d["y"][-1])]
            lims = [extent[:2], extent[2:]]
            for ax, logp in zip(row, d["logp"]):
                _show_density(ax, logp, extent, cmap="viridis")
            clouds = [samples["ladder"][f"{n}:{s}"] for n, s in few] + [samples["samples"]]
            for ax, x in zip(row[len(times):], clouds):
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
        for ax, title in zip(axes[0], titles):
            ax.set_title(title, fontsize=8)
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([]), ax.set_aspect("equal")
        figs.append(Figure(f"{dataset}: densities along the path, samples and trajectories",
                           f"Seed {seed}; the paper's Fig. 4 layout. Left: the model's density p_t at each time t (exact"
                           f" divergence, dopri5 at 1e-4). Then samples from the same noise by {few[0][0] if few else 'a fixed-step solver'}"
                           " at a few NFE, by dopri5, and the ODE trajectories of a few of them over the t = 1 density;"
                           " every panel on the same axes.",
                           f"panels_{dataset}", _png(fig, fig_dir / f"panels_{dataset}.png")))
    return figs


def _sweeps(reports_dir: Path, fig_dir: Path) -> tuple[list[dict[str, Any]], list[Figure]]:
    import optuna

    from fmexp.storage import default_storage, make_storage

    sweeps, figs = [], []
    for folder in sorted((reports_dir / "sweeps").glob("*")):
        if not (folder / "trials.csv").exists():
            continue
        trials = pd.read_csv(folder / "trials.csv")
        best = yaml.safe_load((folder / "best.yaml").read_text()) if (folder / "best.yaml").exists() else {}
        objectives = [o["metric"] for o in best.get("objectives", [])]
        done = trials[trials.state == "COMPLETE"]
        name = folder.name
        sweeps.append({"name": name, "table": done.drop(columns=[c for c in done if c.startswith("user_attrs")]).to_html(index=False, float_format="{:.4g}".format, classes="data"),
                       "best": yaml.safe_dump(best, sort_keys=False)})
        if done.empty:
            continue
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 3), squeeze=False)
        for ax, metric, o in zip(axes[0], objectives, best["objectives"]):
            sns.scatterplot(data=done, x="number", y=metric, ax=ax)
            running = done[metric].cummin() if o["direction"] == "minimize" else done[metric].cummax()
            ax.plot(done["number"], running, color="C1", label="best so far")
            ax.legend()
        figs.append(Figure(f"Sweep {name}: optimization history", "Objective per trial and the best so far.", f"sweep_{name}_history",
                           _png(fig, fig_dir / f"sweep_{name}_history.png")))
        params_cols = [c for c in done if c.startswith("params_")]
        url = default_storage(folder)  # a study in a shared database is not read back here
        if Path(url.partition(":///")[2]).exists() and len(done) >= 2 and params_cols:
            ostudy = optuna.load_study(study_name=name, storage=make_storage(url))
            fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 2.6), squeeze=False)
            for i, (ax, metric) in enumerate(zip(axes[0], objectives)):
                target = (lambda t, i=i: t.values[i]) if len(objectives) > 1 else None
                try:
                    imp = optuna.importance.get_param_importances(ostudy, target=target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
                except (RuntimeError, ValueError) as e:  # e.g. every trial scored the same
                    ax.text(0.5, 0.5, f"no importances:\n{e}", ha="center", va="center", wrap=True)
                    ax.set_axis_off()
                    continue
                sns.barplot(x=list(imp.values()), y=list(imp.keys()), ax=ax, orient="h")
                ax.set_title(metric)
            figs.append(Figure(f"Sweep {name}: parameter importances", "fANOVA importances (Optuna) for each objective.",
                               f"sweep_{name}_importance", _png(fig, fig_dir / f"sweep_{name}_importance.png")))
        if len(objectives) >= 2:
            pareto = {t["number"] for t in best.get("pareto_front", [])}
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            hue = done["number"].map(lambda n: "Pareto front" if n in pareto else "dominated")
            style = done[params_cols[0]] if params_cols else None
            sns.scatterplot(data=done, x=objectives[0], y=objectives[1], hue=hue, style=style, ax=ax, s=60)
            figs.append(Figure(f"Sweep {name}: Pareto front", f"{objectives[0]} against {objectives[1]}.", f"sweep_{name}_pareto",
                               _png(fig, fig_dir / f"sweep_{name}_pareto.png")))
        if "params_sample.rtol" in done and "nfe" in done:
            fig, ax = plt.subplots(figsize=(4.5, 3.5))
            sns.scatterplot(data=done, x="params_sample.rtol", y="nfe", hue=params_cols[0] if params_cols[0] != "params_sample.rtol" else None, ax=ax)
            ax.set_xscale("log")
            figs.append(Figure(f"Sweep {name}: NFE against tolerance", "dopri5 NFE at each sampled rtol.", f"sweep_{name}_tolerance",
                               _png(fig, fig_dir / f"sweep_{name}_tolerance.png")))
    return sweeps, figs


def _provenance(params_path: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=params_path.parent or ".").stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    # Only code and params count: a run rewrites its outputs, dvc.lock and DVC's .gitignore entries
    outputs = (":!dvc.lock", ":!.gitignore", ":!**/.gitignore", ":!runs", ":!reports", ":!data")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *outputs)
    return {"revision": git("rev-parse", "HEAD") + (" (with uncommitted changes)" if dirty not in ("", "unknown") else ""), "versions": versions}


def build_report(params: Params, params_path: str | Path, *, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports") -> Path:
    """Write ``reports/summary.html``, ``reports/tables/*``, ``reports/figures/*`` and the data of DVC's
    plots, ``reports/plots/*``; return the page's path."""
    runs_dir, reports_dir = Path(runs_dir), Path(reports_dir)
    table_dir, fig_dir = reports_dir / "tables", reports_dir / "figures"
    sns.set_theme(style="whitegrid", context="paper")
    metrics = collect_metrics(params, runs_dir)
    tables = []
    for dataset in params.pipeline.datasets:
        if metrics.empty or dataset not in set(metrics.dataset):
            continue
        stats, display = method_table(metrics, dataset, params.pipeline.methods)
        rows = metrics[metrics.dataset == dataset]
        display = display.rename(columns={"distance": f"{rows.distance_name.iloc[0]} distance"})
        note = (f"NLL in nats of {params.score.n_points} held-out points, {rows.distance_name.iloc[0]} distance of the"
                " dopri5 samples to the held-out split.") + _entropy_note(dataset)
        if "fid_backend" in rows and rows.fid_backend.notna().any():
            display = display.rename(columns={"FID": f"FID ({rows.fid_backend.dropna().iloc[0]})"})
            note = _image_note(rows)
        artifacts.write_text(table_dir / f"{dataset}.csv", stats.to_csv())
        artifacts.write_text(table_dir / f"{dataset}.md", display.to_markdown() + "\n")
        artifacts.write_text(table_dir / f"{dataset}.tex", display.map(_latex_bold).to_latex(escape=False))
        html = display.map(_html_bold).reset_index().to_html(escape=False, index=False, classes="data")
        tables.append({"dataset": dataset, "html": html, "n_seeds": int(stats.seeds.max()), "note": note})
    figures = (_convergence(params, runs_dir, fig_dir) + _ladder(params, runs_dir, fig_dir) + _panels(params, runs_dir, fig_dir)
               + _image_grids(params, runs_dir, fig_dir, metrics))
    sweeps, sweep_figs = _sweeps(reports_dir, fig_dir)
    write_plot_data(params, runs_dir, reports_dir / "plots")
    env = Environment(loader=PackageLoader("fmexp"), autoescape=select_autoescape(["html"]))
    page = env.get_template("summary.html").render(
        tables=tables, figures=figures + sweep_figs, sweeps=sweeps, provenance=_provenance(Path(params_path)),
        params=yaml.safe_dump(to_plain(params), sort_keys=False), methods=params.methods)
    out = reports_dir / "summary.html"
    artifacts.write_text(out, page)
    return out


def _entropy_note(dataset: str) -> str:
    """The data's entropy, the floor of the NLL, where its density has a closed form."""
    from fmexp.data import LOG_DENSITIES, entropy

    if dataset not in LOG_DENSITIES:
        return ""
    h, se = entropy(dataset)
    how = "exactly" if se == 0 else f"± {se:.3f}, Monte Carlo over 10^6 points of its closed-form density"
    return f" The data's entropy is {h:.3f} nats ({how}): no model's NLL can be lower."


def _image_note(rows: pd.DataFrame) -> str:
    """What an image table's numbers are, with the FID floor (real held-out images against the training split)."""
    backend = rows.fid_backend.dropna().iloc[0]
    se = rows.groupby("method").bpd_se.mean()
    note = (f"NLL in bits/dim of the held-out images (Hutchinson divergence, uniform dequantization; the standard error"
            f" over images is {se.min():.3f} to {se.max():.3f}), FID with the {backend} features of the dopri5 samples,"
            f" as uint8, against the statistics of the whole training split (the standard protocol).")
    if "fid_floor" in rows:
        note += (f" {int(rows.fid_floor_n.iloc[0])} real held-out images score FID {rows.fid_floor.mean():.1f} against it:"
                 " the floor at that number of images.")
    if "fid_floor_std" in rows and rows.fid_floor_std.notna().any():
        note += (f" Disjoint subsets of the training split spread that floor by {rows.fid_floor_std.mean():.1f} (std):"
                 " FID differences smaller than that are noise.")
    if "fid_classifier_accuracy" in rows:
        note += f" The classifier's test accuracy is {rows.fid_classifier_accuracy.iloc[0]:.1%}."
    return note


def _latex_bold(cell: str) -> str:
    cell = cell.replace("±", r"$\pm$")
    return r"\textbf{" + cell[2:-2] + "}" if cell.startswith("**") else cell


def _html_bold(cell: str) -> str:
    from html import escape

    return f"<b>{escape(cell[2:-2])}</b>" if cell.startswith("**") else escape(cell)
