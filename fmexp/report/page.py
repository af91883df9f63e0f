"""The report: tables in the paper's layout, each sweep's section, the data of DVC's plots, and one
self-contained HTML page that holds them with the figures of ``fmexp.report.figures``.

Tables (``fmexp.report.tables``): one per dataset in the paper's layout, as CSV, Markdown and LaTeX
under ``reports/tables/``, with the one-line answer to the paper's question (FM on OT against FM on
VP) and the tuning studies' comparisons (``fmexp.report.tuning``); the notes beside them come from
``fmexp.report.notes``. For each sweep: its trials, its best settings, and figures of its history,
parameter importances and Pareto front.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from fmexp.config.load import to_plain
from fmexp.config.schema import PER_DATASET_SECTIONS, Params
from fmexp.pipeline.layout import RunFiles
from fmexp.registry import Spec, target
from fmexp.report.figures import read_csvs, run_figures, run_folders
from fmexp.report.guidance import (
    conditional_cells,
    guidance_claim,
    guidance_display,
    guidance_figures,
    guidance_table,
    likelihood_summary,
)
from fmexp.report.notes import (
    GUIDANCE_NOTE,
    REFLOW_NOTE,
    SAMPLERS_NOTE,
    SIGNIFICANCE_NOTE,
    entropy_note,
    image_note,
    pair_note,
    paper_question,
)
from fmexp.report.reflow import couples_cost, reflow_claim, reflow_display, reflow_figure, reflow_table
from fmexp.report.samplers import sampler_display, sampler_figure, sampler_quality, sampler_summary, sampler_table
from fmexp.report.sweeps import sweep_sections
from fmexp.report.tables import method_table
from fmexp.report.tuning import tuning_sections
from fmexp.runtime import artifacts
from fmexp.training.schedules import ema_decay_at

__all__ = ["collect_metrics", "write_plot_data", "build_report"]

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


PLOT_DATA = {  # reports/plots/<name>.csv: (per-run summary file, the rows' keys, the values averaged over seeds)
    "convergence": ("curve.csv", ["step"], ["val_loss", "nll", "nfe"]),
    "nfe": ("ladder.csv", ["solver", "grid", "steps", "nfe"], ["error", "distance"]),
    "fid_nfe": ("score/fid_ladder.csv", ["solver", "grid", "steps", "nfe"], ["fid"]),
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
    conditional = conditional_cells(params)
    tables = []
    for dataset in params.pipeline.datasets:
        if metrics.empty or dataset not in set(metrics.dataset):
            continue
        unconditional = [m for m in params.methods_of(dataset) if (dataset, m) not in conditional]
        stats, display = method_table(metrics, dataset, unconditional)
        rows = metrics[metrics.dataset == dataset]
        if dataset in params.pairs:
            note = pair_note(params, dataset)
        else:
            display = display.rename(columns={"distance": f"{rows.distance_name.iloc[0]} distance"})
            note = (
                f"NLL in nats of {params.score.n_points} held-out points, {rows.distance_name.iloc[0]} distance of"
                " the dopri5 samples to the held-out split."
            ) + entropy_note(dataset, rows)
        if "fid_backend" in rows and rows.fid_backend.notna().any():
            display = display.rename(columns={"FID": f"FID ({rows.fid_backend.dropna().iloc[0]})"})
            note = image_note(rows)
        note += SIGNIFICANCE_NOTE
        artifacts.write_text(table_dir / f"{dataset}.csv", stats.to_csv())
        artifacts.write_text(table_dir / f"{dataset}.md", display.to_markdown() + "\n")
        artifacts.write_text(table_dir / f"{dataset}.tex", display.map(_latex_bold).to_latex(escape=False))
        html = _to_html(display)
        tables.append(
            {
                "dataset": dataset,
                "html": html,
                "markdown": display.to_markdown(),
                "n_seeds": int(stats.seeds.max()),
                "note": note,
                "question": paper_question(params, metrics, dataset),
                "asks": "Tong et al.'s ordering (OT-CFM straighter than I-CFM)."
                if dataset in params.pairs
                else "The paper's question.",
            }
        )
    tuning = tuning_sections(params, reports_dir)
    for t in tuning:
        if "chosen" in t:
            t["chosen_html"] = t["chosen"].reset_index().to_html(index=False, classes="data")
            t["shared_html"] = _to_html(t["shared"])
    quality = sampler_quality(params, runs_dir)
    kept = [(d, m) not in conditional for d, m in zip(quality.dataset, quality.method, strict=True)]
    quality = quality.loc[pd.Series(kept, index=quality.index, dtype=bool)]
    guided = guidance_table(params, runs_dir)
    sections = [
        section
        for section in (
            _samplers_section(quality, table_dir),
            _reflow_section(params, metrics, runs_dir, table_dir),
            _guidance_section(guided, metrics, conditional, table_dir),
        )
        if section is not None
    ]
    figures = (
        run_figures(params, runs_dir, fig_dir, metrics)
        + sampler_figure(quality, fig_dir)
        + reflow_figure(metrics, fig_dir)
        + guidance_figures(params, guided, runs_dir, fig_dir)
    )
    sweeps, sweep_figs = sweep_sections(reports_dir, fig_dir)
    write_plot_data(params, runs_dir, reports_dir / "plots")
    env = Environment(loader=PackageLoader("fmexp.report"), autoescape=select_autoescape(["html"]))
    page = env.get_template("summary.html").render(
        tables=tables,
        sections=sections,
        figures=figures + sweep_figs,
        sweeps=sweeps,
        provenance=_provenance(),
        params=yaml.safe_dump(to_plain(params), sort_keys=False),
        methods={
            name: {
                **vars(m),
                "path": component_label("path", m.path),
                "coupling": component_label("coupling", m.coupling),
            }
            for name, m in params.methods.items()
        },
        settings=settings_in_effect(params, runs_dir).to_html(index=False, classes="data"),
        ema=ema_in_effect(params, runs_dir).to_html(index=False, classes="data"),
        tuning=tuning,
    )
    out = reports_dir / "summary.html"
    artifacts.write_text(out, page)
    artifacts.write_text(table_dir / "results.md", results_markdown(tables, tuning, params, sections))
    return out


def results_markdown(
    tables: list[dict[str, Any]], tuning: list[dict[str, Any]], params: Params, sections: Sequence[dict[str, str]] = ()
) -> str:
    """The docs' results page: each dataset's table in the paper's layout with its note and the one-line
    answer to the paper's question, the sections beyond the paper (samplers, reflow), then the tuning studies'
    comparisons, from the
    same frames as ``reports/tables/`` (so the page cannot drift from them)."""
    seeds = ", ".join(str(s) for s in params.pipeline.seeds)
    parts = [
        f"Written by the report stage of `dvc repro` (`make repro`) from `params.yaml`: seeds {seeds}, mean ± std"
        " over seeds, each method at the settings its tuning study chose (see the end of this page)."
        " Bold: the best mean where a paired t-test across seeds, Holm-corrected over its comparisons with"
        " the other methods, separates it from each at p < 0.05 (the raw and corrected p-values are in"
        " `reports/tables/<dataset>.csv`). The best is chosen from the data."
    ]
    for t in tables:
        parts += [f"## {t['dataset']}", t["markdown"], t["note"]]
        if t["question"]:
            parts.append(f"**{t['asks']}** {t['question']}")
    for section in sections:
        parts += [f"## {section['title']}", section["note"], section["markdown"], section["summary"]]
    for t in tuning:
        parts.append(f"## Tuning: {t['name']}")
        if "chosen" in t:
            parts += [t["chosen"].to_markdown(), "One shared recipe, from the same trials:", t["shared"].to_markdown()]
        parts.append(t["note"])
    return "\n\n".join(parts) + "\n"


def _section(
    name: str, title: str, note: str, rows: pd.DataFrame, display: pd.DataFrame, summary: str, table_dir: Path
) -> dict[str, str]:
    """A section of the page and of the results page beyond the paper's tables: its numbers as
    ``reports/tables/<name>.csv`` and its display as ``<name>.md``."""
    markdown = display.to_markdown(index=False)
    artifacts.write_text(table_dir / f"{name}.csv", rows.to_csv(index=False))
    artifacts.write_text(table_dir / f"{name}.md", markdown + "\n")
    html = display.astype(str).map(_html_bold).to_html(escape=False, index=False, classes="data")
    return {"name": name, "title": title, "note": note, "markdown": markdown, "summary": summary, "html": html}


def _samplers_section(quality: pd.DataFrame, table_dir: Path) -> dict[str, str] | None:
    rows = sampler_table(quality)
    if rows.empty:
        return None
    summary = f"Over the cells, {sampler_summary(rows)}"
    return _section("samplers", "Few-step samplers", SAMPLERS_NOTE, rows, sampler_display(rows), summary, table_dir)


def _reflow_section(params: Params, metrics: pd.DataFrame, runs_dir: Path, table_dir: Path) -> dict[str, str] | None:
    rows = reflow_table(metrics)
    if rows.empty:
        return None
    cost = couples_cost(params, runs_dir)
    spent = "; ".join(
        f"{r.dataset} {r.round}: {r.couples:.0f} couples at {r.nfe:.0f} NFE a solve, {r.seconds:.1f} s"
        for r in cost.itertuples()
    )
    summary = reflow_claim(rows) + (f" The couples cost (mean over seeds): {spent}." if spent else "")
    return _section("reflow", "Reflow", REFLOW_NOTE, rows, reflow_display(rows), summary, table_dir)


def _guidance_section(
    rows: pd.DataFrame, metrics: pd.DataFrame, conditional: set[tuple[str, str]], table_dir: Path
) -> dict[str, str] | None:
    if rows.empty:
        return None
    summary = " ".join(x for x in (guidance_claim(rows), likelihood_summary(metrics, conditional)) if x)
    return _section(
        "guidance", "Classifier-free guidance", GUIDANCE_NOTE, rows, guidance_display(rows), summary, table_dir
    )


def component_label(kind: str, spec: Spec) -> str:
    """A component as the report names it: its ``_target_`` and arguments, ``name = dotted.Path(arg=1)``
    for a registered name."""
    dotted, args = target(kind, spec)
    call = f"{dotted}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    return f"{spec} = {call}" if isinstance(spec, str) else call


def ema_in_effect(params: Params, runs_dir: Path) -> pd.DataFrame:
    """The EMA's decay at its last update in each dataset's runs, beside the decay params.yaml states: its
    warm-up ``min(d, (1 + n) / (10 + n))`` reaches d = 0.999 only after about 9000 updates."""
    rows = {}
    for dataset, _, folder in run_folders(params, runs_dir):
        info = RunFiles(folder, params.pipeline.seeds[0]).train_info
        if dataset in rows or not info.exists():
            continue
        train = artifacts.read_json(info)["run"]["train"]
        rows[dataset] = {
            "dataset": dataset,
            "steps": train["steps"],
            "ema_decay": train["ema_decay"],
            "in effect at the last step": round(ema_decay_at(train["ema_decay"], train["steps"] - 1), 5),
        }
    return pd.DataFrame(list(rows.values()), columns=["dataset", "steps", "ema_decay", "in effect at the last step"])


def _latex_bold(cell: str) -> str:
    cell = cell.replace("±", r"$\pm$")
    return r"\textbf{" + cell[2:-2] + "}" if cell.startswith("**") else cell


def _to_html(display: pd.DataFrame) -> str:
    """A display table as HTML, its bold cells in <b>."""
    return display.map(_html_bold).reset_index().to_html(escape=False, index=False, classes="data")


def _html_bold(cell: str) -> str:
    from html import escape

    return f"<b>{escape(cell[2:-2])}</b>" if cell.startswith("**") else escape(cell)
