"""The report's figures of the runs, in the paper's layouts (seaborn), each also a PNG under
``reports/figures/``: convergence curves (Fig. 10), sampling error and sample quality against NFE for
the fixed-step solvers (Fig. 7), FID against NFE, image sample grids, and the Fig. 4 panels
(densities along the path, samples, trajectories). ``fmexp.report.page`` puts them on the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, NullFormatter, NullLocator

from fmexp.config.schema import Params
from fmexp.flow.metrics import bits_per_dim
from fmexp.pipeline.layout import RunFiles
from fmexp.report.panels import fig4_panels
from fmexp.report.render import Figure, png
from fmexp.runtime import artifacts

__all__ = ["LABELS", "palette", "nfe_axis", "run_folders", "read_csvs", "run_figures", "tile", "show_tiles"]


LABELS = {
    "val_loss": "validation loss / its first value",
    "nll": "held-out NLL (nats)",
    "bpd": "held-out NLL (bits/dim)",
    "nfe": "dopri5 NFE",
    "error": "distance to the dopri5 endpoint",
    "distance": "sliced W2 to held-out data",
    "fid": "FID",
}
"""Each plotted quantity's axis label."""


def palette(params: Params) -> dict[str, Any]:
    """One colour per method of the pipeline, the same in every figure (seaborn's "deep" palette, in
    ``pipeline.methods`` order, then those of ``methods_by_dataset``)."""
    methods = list(
        dict.fromkeys([*params.pipeline.methods, *(m for d in params.pipeline.datasets for m in params.methods_of(d))])
    )
    return dict(zip(methods, sns.color_palette("deep", len(methods)), strict=True))


def nfe_axis(ax: plt.Axes, values: Iterable[float]) -> None:
    """A log NFE axis ticked at the NFE values that occur (the ladder's powers of two), as plain numbers."""
    ticks = sorted({int(round(v)) for v in values if v > 0})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([str(t) for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("NFE")


def _log_if_decades(ax: plt.Axes, values: pd.Series) -> None:
    """A log y axis where the values span more than a decade, labelled with plain numbers."""
    positive = values[values > 0]
    if len(positive) and positive.max() > 10 * positive.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def _first_column_labels(g: sns.FacetGrid) -> None:
    """Each row's y label once, on its first panel: the panels beside it plot the same quantity."""
    for row in g.axes:
        for ax in row[1:]:
            ax.set_ylabel("")


def _plain_legend(g: sns.FacetGrid) -> None:
    """Legend titles from the data's column names made plain."""
    legend = g.legend
    if legend is None:
        return
    legend.set_title(None)
    for text in legend.get_texts():
        text.set_text({"method": "method", "solver": "solver"}.get(text.get_text(), text.get_text()))


def run_folders(params: Params, runs_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """Each (dataset, method) cell of the pipeline, with its folder under ``runs_dir``."""
    cells = set(params.pipeline.cells or [])
    for dataset in params.pipeline.datasets:
        for method in params.methods_of(dataset):
            if not cells or f"{dataset}/{method}" in cells:
                yield dataset, method, runs_dir / dataset / method


def read_csvs(params: Params, runs_dir: Path, name: str) -> pd.DataFrame:
    """The per-method summaries ``curve.csv`` or ``ladder.csv`` (which carry a seed column), stacked."""
    frames = [
        pd.read_csv(f / name).assign(dataset=d, method=m)
        for d, m, f in run_folders(params, runs_dir)
        if (f / name).exists() and (f / name).stat().st_size > 1
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_figures(params: Params, runs_dir: Path, fig_dir: Path, metrics: pd.DataFrame) -> list[Figure]:
    """Every figure of the runs: convergence, against NFE, image grids and FID against NFE, Fig. 4 panels."""
    return (
        _convergence(params, runs_dir, fig_dir)
        + _ladder(params, runs_dir, fig_dir)
        + fig4_panels(params, runs_dir, fig_dir)
        + _image_grids(params, runs_dir, fig_dir, metrics)
    )


def _convergence(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    """Validation loss, held-out NLL (bits/dim for images) and dopri5 NFE against step: one panel per
    quantity and dataset, each on its own scale; the validation loss over its first row's value,
    since the objectives' losses differ in scale by orders of magnitude."""
    curves = read_csvs(params, runs_dir, "curve.csv")
    if curves.empty:
        return []
    curves = curves.copy()
    first = curves.groupby(["dataset", "method", "seed"])["val_loss"].transform("first")
    curves["val_loss"] = curves["val_loss"] / first
    units = _image_units(params, runs_dir)
    if "nll" in curves:
        for dataset, (dim, scale) in units.items():
            rows = curves.dataset == dataset
            curves.loc[rows, "nll"] = bits_per_dim(curves.loc[rows, "nll"], dim, scale)
    ys = [c for c in ("val_loss", "nll", "nfe") if c in curves]
    long = curves.melt(id_vars=["dataset", "method", "seed", "step"], value_vars=ys, var_name="quantity")
    g = sns.relplot(
        data=long,
        x="step",
        y="value",
        hue="method",
        hue_order=list(palette(params)),
        palette=palette(params),
        row="quantity",
        col="dataset",
        kind="line",
        errorbar="sd",
        facet_kws={"sharey": False, "sharex": False},
        height=2.4,
        aspect=1.5,
        marker="o",
        markersize=3,
    )
    g.set_titles(template="{col_name}")
    for (quantity, dataset), ax in g.axes_dict.items():
        label = "bpd" if quantity == "nll" and dataset in units else quantity
        ax.set_ylabel(LABELS[label])
        if quantity == "val_loss":
            _log_if_decades(ax, long.loc[(long.quantity == quantity) & (long.dataset == dataset), "value"])
        if quantity != ys[0]:
            ax.set_title("")
    g.figure.subplots_adjust(wspace=0.3)
    _plain_legend(g)
    at = ", ".join(f"{d} {t:g}" for d, t in _curve_tolerances(params, runs_dir).items())
    return [
        Figure(
            "Convergence",
            "Validation loss over its value at the first row (log scale where it falls by more than a decade),"
            " held-out NLL (nats for 2-D data,"
            " bits/dim for images) and dopri5 NFE against training step; mean ± sd over seeds (cf. the"
            " paper's Fig. 10). The NLL and NFE solve at rtol = atol = "
            f"train.curve_tol: {at}.",
            "convergence",
            png(g.figure, fig_dir / "convergence.png"),
        )
    ]


def _image_units(params: Params, runs_dir: Path) -> dict[str, tuple[int, float]]:
    """Per image dataset, the dimension and the scale of the map from levels to the model's space (for
    bits/dim): the U-Net's input shape from ``train.json``, the levels from ``samples.pt``."""
    from fmexp.data.images import data_scale

    out = {}
    for dataset, _, folder in run_folders(params, runs_dir):
        files = RunFiles(folder, params.pipeline.seeds[0])
        if dataset in out or not (files.train_info.exists() and files.samples.exists()):
            continue
        spec = artifacts.read_json(files.train_info)["plan"]["model_spec"]
        levels = artifacts.load_torch(files.samples).get("levels")
        if levels and "resolution" in spec:
            out[dataset] = (int(spec["in_channels"]) * int(spec["resolution"]) ** 2, data_scale(int(levels)))
    return out


def _curve_tolerances(params: Params, runs_dir: Path) -> dict[str, float]:
    """Each dataset's ``train.curve_tol``, as its runs' ``train.json`` recorded it."""
    tol = {}
    for dataset, _, folder in run_folders(params, runs_dir):
        info = RunFiles(folder, params.pipeline.seeds[0]).train_info
        if dataset not in tol and info.exists():
            tol[dataset] = artifacts.read_json(info)["run"]["train"]["curve_tol"]
    return tol


def _against_nfe(
    frame: pd.DataFrame,
    y: str,
    title: str,
    caption: str,
    name: str,
    fig_dir: Path,
    colours: dict[str, Any],
    *,
    log_y: bool = False,
    floor: dict[str, float] | None = None,
) -> Figure:
    """One panel per dataset of ``y`` against NFE, a line per method and solver (the paper's Fig. 7 layout);
    ``floor`` draws a dashed line per dataset."""
    g = sns.relplot(
        data=frame,
        x="nfe",
        y=y,
        hue="method",
        hue_order=[m for m in colours if m in set(frame.method)],
        palette=colours,
        style="solver",
        col="dataset",
        kind="line",
        markers=True,
        errorbar="sd",
        height=3,
        aspect=1.2,
        facet_kws={"sharex": False, "sharey": False},
    )
    g.set_titles(col_template="{col_name}")
    for dataset, ax in g.axes_dict.items():
        nfe_axis(ax, frame.loc[frame.dataset == dataset, "nfe"])
        ax.set_yscale("log" if log_y else "linear")
        ax.set_ylabel(LABELS[y])
        if floor and dataset in floor:
            ax.axhline(floor[dataset], color="0.3", ls="--", lw=1)
    _first_column_labels(g)
    _plain_legend(g)
    return Figure(title, caption + " Mean ± sd over seeds.", name, png(g.figure, fig_dir / f"{name}.png"))


def uniform_grid(ladder: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ladder on the uniform time grid: the paper's Fig. 7 (``fmexp.report.samplers`` compares grids)."""
    return ladder[ladder.grid == "uniform"] if "grid" in ladder else ladder


def _ladder(params: Params, runs_dir: Path, fig_dir: Path) -> list[Figure]:
    ladder = uniform_grid(read_csvs(params, runs_dir, "ladder.csv"))
    if ladder.empty:
        return []
    return [
        _against_nfe(
            ladder,
            "error",
            "Sampling error against NFE",
            "Mean distance of fixed-step endpoints to the dopri5 endpoints"
            " from the same noise (the paper's Fig. 7 measure).",
            "nfe_error",
            fig_dir,
            palette(params),
            log_y=True,
        ),
        _against_nfe(
            ladder,
            "distance",
            "Sample quality against NFE",
            "Sliced W2 distance of fixed-step samples to held-out data (log scale).",
            "nfe_quality",
            fig_dir,
            palette(params),
            log_y=True,
        ),
    ]


def tile(x: np.ndarray, cols: int) -> np.ndarray:
    """Images ``(n, C, H, W)`` in [0, 1] as one canvas ``(rows (H + 1), cols (W + 1), C)``, row by row, a
    white line between them (and white where a row is short)."""
    n, c, h, w = x.shape
    rows = max(1, -(-n // cols))
    canvas = np.ones((rows * (h + 1), cols * (w + 1), c))
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = x[i].transpose(1, 2, 0)
    return canvas


def show_tiles(ax: plt.Axes, canvas: np.ndarray) -> None:
    """``tile``'s canvas on ``ax``, grey where it has one channel, without axes."""
    grey = canvas.shape[-1] == 1
    ax.imshow(canvas.squeeze(-1) if grey else canvas, cmap="gray" if grey else None, vmin=0, vmax=1)
    ax.set_axis_off()


def _image_grids(params: Params, runs_dir: Path, fig_dir: Path, metrics: pd.DataFrame) -> list[Figure]:
    """A grid of dopri5 samples per method (first seed), for image datasets."""
    figs = []
    seed = params.pipeline.seeds[0]
    for dataset in params.pipeline.datasets:
        files = {m: RunFiles(runs_dir / dataset / m, seed) for m in params.methods_of(dataset)}
        stored = {m: artifacts.load_torch(f.samples) for m, f in files.items() if f.samples.exists()}
        grids = {
            m: st["samples"][:64].float() / (st["levels"] - 1) for m, st in stored.items() if st.get("levels")
        }  # uint8 levels to [0, 1]
        if not grids:
            continue
        fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.2), squeeze=False)
        for ax, (method, x) in zip(axes[0], grids.items(), strict=False):
            show_tiles(ax, tile(x.numpy(), int(np.ceil(np.sqrt(len(x))))))
            ax.set_title(method)
        figs.append(
            Figure(
                f"{dataset}: samples",
                f"dopri5 samples, seed {seed}.",
                f"grid_{dataset}",
                png(fig, fig_dir / f"grid_{dataset}.png"),
            )
        )
    fid = uniform_grid(read_csvs(params, runs_dir, "score/fid_ladder.csv"))
    if not fid.empty:
        floor = metrics.groupby("dataset")["fid_floor"].mean().dropna().to_dict() if "fid_floor" in metrics else {}
        figs.append(
            _against_nfe(
                fid,
                "fid",
                "FID against NFE",
                "FID (log scale) of fixed-step samples (uint8) against the training split's"
                " statistics; dashed: as many real held-out images (the floor).",
                "fid_nfe",
                fig_dir,
                palette(params),
                log_y=True,
                floor=floor,
            )
        )
    return figs
