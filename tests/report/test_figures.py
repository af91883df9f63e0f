"""The report's figures, rendered from the tiny pipeline's runs and read back as a reader would."""

from __future__ import annotations

import pytest


@pytest.mark.slow
@pytest.mark.e2e
def test_each_figure_reads_as_a_papers_figure(tiny_pipeline, tmp_path, monkeypatch) -> None:
    """NFE ticks at the ladder's values, log axes where values span decades, bits/dim for images, plain
    titles and labels, one colour per method in every figure."""
    from matplotlib.colors import to_hex

    from fmexp.config.load import load_params
    from fmexp.report import figures, panels
    from fmexp.report.page import collect_metrics

    drawn = {}

    def keep(fig, path):
        fig.canvas.draw()  # tick labels exist once drawn
        drawn[path.stem] = fig
        return ""

    for module in (figures, panels):
        monkeypatch.setattr(module, "png", keep)
    params = load_params(tiny_pipeline / "params.yaml")
    runs = tiny_pipeline / "runs"
    figures.run_figures(params, runs, tmp_path, collect_metrics(params, runs))
    assert {"convergence", "nfe_error", "nfe_quality", "fid_nfe", "panels_checkerboard", "grid_digits"} <= set(drawn)
    colours = {m: to_hex(c) for m, c in figures.palette(params).items()}
    for name in ("nfe_error", "nfe_quality", "fid_nfe", "convergence"):
        fig = drawn[name]
        legend = fig.legends[0]
        assert not legend.get_title().get_text()  # no "number" or "params_method.path"
        shown = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)}
        for method in ("fm_ot", "fm_vp"):
            assert to_hex(shown[method].get_color()) == colours[method]  # the same colour everywhere
        for ax in fig.axes:
            assert "=" not in ax.get_title() and "|" not in ax.get_title()
            if name != "convergence":
                # the tiny ladder: euler at 4 and 8 steps, rk4 at 1 and 2 (NFE 4 and 8)
                assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "8"]
                assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == ("log", "log", "NFE")
                label = figures.LABELS[{"nfe_error": "error", "nfe_quality": "distance"}.get(name, "fid")]
                assert ax.get_ylabel() == (label if ax is fig.axes[0] else "")  # once per row of panels
    convergence = {ax.get_ylabel() for ax in drawn["convergence"].axes}
    assert {
        "held-out NLL (nats)",
        "held-out NLL (bits/dim)",
        "dopri5 NFE",
        "validation loss / its first value",
    } <= convergence
    titles = {ax.get_title() for ax in drawn["convergence"].axes} - {""}
    assert titles == {"checkerboard", "digits"}
    for ax in drawn["convergence"].axes:
        if ax.get_ylabel() == "held-out NLL (bits/dim)":
            assert all(
                0 < y < 12 for line in ax.get_lines() for y in line.get_ydata()
            )  # bits per dimension of 17 levels
