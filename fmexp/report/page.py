"""The report: tables in the paper's layout, each sweep's section, the data of DVC's plots, and one
self-contained HTML page that holds them with the figures of ``fmexp.report.figures``.

Tables (pandas): one per dataset, methods by (NLL, sample distance, NFE), mean +- std over seeds,
the best mean in bold where a Welch t-test across seeds separates it from every other method; also
CSV, Markdown and LaTeX under ``reports/tables/``. For each sweep: its trials, its best settings, and
figures of its history, parameter importances and Pareto front.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from fmexp.config.load import to_plain
from fmexp.config.schema import PER_DATASET_SECTIONS, Params
from fmexp.pipeline.layout import RunFiles
from fmexp.report.figures import read_csvs, run_figures, run_folders
from fmexp.report.sweeps import sweep_sections
from fmexp.runtime import artifacts

__all__ = ["collect_metrics", "welch_p", "method_table", "write_plot_data", "build_report"]

COLUMNS = {"nll": "NLL (nats)", "distance": "distance", "nfe": "NFE"}
IMAGE_COLUMNS = {"bpd": "NLL (bits/dim)", "fid": "FID", "nfe": "NFE"}  # the paper's Table 1
PACKAGES = (
    "fmexp",
    "torch",
    "torchdiffeq",
    "numpy",
    "scipy",
    "POT",
    "optuna",
    "hydra-core",
    "omegaconf",
    "dvc",
    "pandas",
    "seaborn",
    "matplotlib",
)


def collect_metrics(params: Params, runs_dir: Path) -> pd.DataFrame:
    """One row per scored seed: dataset, method, seed and every metric (from each seed's ``metrics.json``)."""
    rows = [
        {"dataset": d, "method": m, "seed": seed, **artifacts.read_json(files.metrics)}
        for d, m, folder in run_folders(params, runs_dir)
        for seed in params.pipeline.seeds
        if (files := RunFiles(folder, seed)).metrics.exists()
    ]
    return pd.DataFrame(rows)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` (values over seeds) have equal means;
    NaN where either has fewer than two values, or neither varies over seeds."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan")  # no spread on either side (an NFE every seed shares): no test, and no bold
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
        best = str(mean.idxmin()) if len(mean) else ""
        values = {m: df.loc[df.method == m, col].dropna().to_numpy(float) for m in order}
        stats[f"{col}_p"] = [float("nan") if m == best else welch_p(values[best], values[m]) for m in order]
        p_values = zip(order, stats[f"{col}_p"], strict=True)
        significant = len(order) > 1 and all(p < SIGNIFICANCE for m, p in p_values if m != best)
        fmt = {"nfe": "{:.0f} ± {:.0f}", "fid": "{:.1f} ± {:.1f}"}.get(col, "{:.3f} ± {:.3f}")
        cells = [fmt.format(a, b) for a, b in zip(mean, std, strict=False)]
        display[label] = [
            f"**{c}**" if m == best and significant else c for m, c in zip(stats.index, cells, strict=True)
        ]
    display.index.name = "method"
    return stats, display


PLOT_DATA = {  # reports/plots/<name>.csv: (per-run summary file, the rows' keys, the values averaged over seeds)
    "convergence": ("curve.csv", ["step"], ["val_loss", "nll", "nfe"]),
    "nfe": ("ladder.csv", ["solver", "steps", "nfe"], ["error", "distance"]),
    "fid_nfe": ("score/fid_ladder.csv", ["solver", "steps", "nfe"], ["fid"]),
}


def write_plot_data(params: Params, runs_dir: Path, plot_dir: Path) -> None:
    """The data of ``dvc.yaml``'s top-level plots, which compare methods: one long CSV per figure, each
    row a dataset, method (and solver) and x value, with the mean over seeds."""
    for name, (source, keys, values) in PLOT_DATA.items():
        frame = read_csvs(params, runs_dir, source)
        if frame.empty:
            continue
        mean = (
            frame.groupby(["dataset", "method", *keys], sort=False)[[v for v in values if v in frame]]
            .mean()
            .reset_index()
        )
        artifacts.write_text(plot_dir / f"{name}.csv", mean.to_csv(index=False))


def _provenance() -> dict[str, Any]:
    """The installed versions of the packages behind the numbers. No git revision: the page must be the
    same bytes whenever its content is (a commit would change it); ``dvc.lock`` holds the hash of every
    file of code and every param each stage ran with."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"versions": versions}


def settings_in_effect(params: Params, runs_dir: Path) -> pd.DataFrame:
    """Each setting a run used that differs from params.yaml's base sections (a ``per_dataset`` entry,
    or a command-line override): dataset, method, key, the value in effect (from the run's
    ``train.json``) and the base value. One row per (dataset, key, value); the methods that share it
    are listed together."""
    base = to_plain(params)
    rows = []
    for dataset, method, folder in run_folders(params, runs_dir):
        info = RunFiles(folder, params.pipeline.seeds[0]).train_info
        if not info.exists():
            continue
        run = artifacts.read_json(info)["run"]
        for section in PER_DATASET_SECTIONS:
            for key, value in run[section].items():
                if value != base[section].get(key):
                    rows.append((dataset, method, f"{section}.{key}", repr(value), repr(base[section].get(key))))
    frame = pd.DataFrame(rows, columns=["dataset", "method", "key", "in effect", "params.yaml base"])
    keys = ["dataset", "key", "in effect", "params.yaml base"]
    return (
        frame.groupby(keys, sort=False)["method"]
        .agg(", ".join)
        .reset_index()[["dataset", "key", "in effect", "params.yaml base", "method"]]
    )


def build_report(
    params: Params, params_path: str | Path, *, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports"
) -> Path:
    """Write ``reports/summary.html``, ``reports/tables/*`` (with ``results.md``, the docs' results page),
    ``reports/figures/*`` and the data of DVC's plots, ``reports/plots/*``; return the page's path."""
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
        note = (
            f"NLL in nats of {params.score.n_points} held-out points, {rows.distance_name.iloc[0]} distance of the"
            " dopri5 samples to the held-out split."
        ) + _entropy_note(dataset)
        if "fid_backend" in rows and rows.fid_backend.notna().any():
            display = display.rename(columns={"FID": f"FID ({rows.fid_backend.dropna().iloc[0]})"})
            note = _image_note(rows)
        artifacts.write_text(table_dir / f"{dataset}.csv", stats.to_csv())
        artifacts.write_text(table_dir / f"{dataset}.md", display.to_markdown() + "\n")
        artifacts.write_text(table_dir / f"{dataset}.tex", display.map(_latex_bold).to_latex(escape=False))
        html = display.map(_html_bold).reset_index().to_html(escape=False, index=False, classes="data")
        tables.append(
            {
                "dataset": dataset,
                "html": html,
                "markdown": display.to_markdown(),
                "n_seeds": int(stats.seeds.max()),
                "note": note,
            }
        )
    figures = run_figures(params, runs_dir, fig_dir, metrics)
    sweeps, sweep_figs = sweep_sections(reports_dir, fig_dir)
    write_plot_data(params, runs_dir, reports_dir / "plots")
    env = Environment(loader=PackageLoader("fmexp.report"), autoescape=select_autoescape(["html"]))
    page = env.get_template("summary.html").render(
        tables=tables,
        figures=figures + sweep_figs,
        sweeps=sweeps,
        provenance=_provenance(),
        params=yaml.safe_dump(to_plain(params), sort_keys=False),
        methods=params.methods,
        settings=settings_in_effect(params, runs_dir).to_html(index=False, classes="data"),
    )
    out = reports_dir / "summary.html"
    artifacts.write_text(out, page)
    artifacts.write_text(table_dir / "results.md", results_markdown(tables, params))
    return out


def results_markdown(tables: list[dict[str, Any]], params: Params) -> str:
    """The docs' results page: each dataset's table in the paper's layout with its note, from the same
    frames as ``reports/tables/`` (so the page cannot drift from them)."""
    seeds = ", ".join(str(s) for s in params.pipeline.seeds)
    parts = [
        f"Written by the report stage of `dvc repro` (`make repro`) from `params.yaml`: seeds {seeds}, mean ± std"
        " over seeds. Bold: the best mean where Welch's t-test across seeds separates it from every other method"
        " at p < 0.05 (the p-values are in `reports/tables/<dataset>.csv`)."
    ]
    for t in tables:
        parts += [f"## {t['dataset']}", t["markdown"], t["note"]]
    return "\n\n".join(parts) + "\n"


def _entropy_note(dataset: str) -> str:
    """The data's entropy, the floor of the NLL, where its density has a closed form."""
    from fmexp.data.toy import LOG_DENSITIES, entropy

    if dataset not in LOG_DENSITIES:
        return ""
    h, se = entropy(dataset)
    how = "exactly" if se == 0 else f"± {se:.3f}, Monte Carlo over 10^6 points of its closed-form density"
    return f" The data's entropy is {h:.3f} nats ({how}): no model's NLL can be lower."


def _image_note(rows: pd.DataFrame) -> str:
    """What an image table's numbers are, with the FID floor (real held-out images against the training split)."""
    backend = rows.fid_backend.dropna().iloc[0]
    se = rows.groupby("method").bpd_se.mean()
    note = (
        f"NLL in bits/dim of the held-out images (Hutchinson divergence, uniform dequantization; the standard error"
        f" over images is {se.min():.3f} to {se.max():.3f}), FID with the {backend} features of the dopri5 samples,"
        f" as uint8, against the statistics of the whole training split (the standard protocol)."
    )
    if "fid_draws" in rows and rows.fid_draws.max() > 1:
        note += (
            f" Each seed's FID is the mean over {int(rows.fid_draws.iloc[0])} disjoint draws of "
            f"{int(rows.fid_n.iloc[0])} samples;"
            f" one draw's FID spreads by {rows.fid_draw_std.mean():.1f} (std over draws, mean over runs)."
        )
    if "fid_floor" in rows:
        note += (
            f" {int(rows.fid_floor_n.iloc[0])} real held-out images score FID {rows.fid_floor.mean():.1f} against it:"
            " the floor at that number of images."
        )
    if "fid_floor_std" in rows and rows.fid_floor_std.notna().any():
        note += (
            f" Disjoint subsets of the training split spread that floor by {rows.fid_floor_std.mean():.1f} (std):"
            " FID differences smaller than that are noise."
        )
    if "fid_classifier_accuracy" in rows:
        note += f" The classifier's test accuracy is {rows.fid_classifier_accuracy.iloc[0]:.1%}."
    return note


def _latex_bold(cell: str) -> str:
    cell = cell.replace("±", r"$\pm$")
    return r"\textbf{" + cell[2:-2] + "}" if cell.startswith("**") else cell


def _html_bold(cell: str) -> str:
    from html import escape

    return f"<b>{escape(cell[2:-2])}</b>" if cell.startswith("**") else escape(cell)
