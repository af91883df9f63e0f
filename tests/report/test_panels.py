"""The paper's Fig. 4 panels where the methods of a dataset ran different ladders: a reflow round samples
Euler only, the first method's panels show midpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from fmexp.config.load import load_params
from fmexp.pipeline.layout import RunFiles
from fmexp.report import panels
from fmexp.runtime import artifacts

ROOT = Path(__file__).resolve().parents[2]


def _write(runs: Path, method: str, ladder: list[str]) -> None:
    files = RunFiles(runs / "checkerboard" / method, 0)
    gen = torch.Generator().manual_seed(0)
    for path in (files.samples, files.density):
        path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.save_torch(
        files.samples,
        {
            "samples": torch.randn(50, 2, generator=gen),
            "ladder": {key: torch.randn(50, 2, generator=gen) for key in ladder},
            "trajectories": torch.randn(5, 3, 2, generator=gen),
        },
    )
    axis = torch.linspace(-2, 2, 4)
    artifacts.save_torch(
        files.density, {"x": axis, "y": axis, "t": torch.tensor([0.0, 1.0]), "logp": torch.zeros(2, 4, 4)}
    )


def test_a_rung_that_a_method_did_not_run_is_a_blank_panel(tmp_path: Path, monkeypatch) -> None:
    drawn = {}

    def keep(fig, path):
        drawn[path.stem] = fig
        return ""

    monkeypatch.setattr(panels, "png", keep)
    params = load_params(ROOT / "params.yaml")
    runs = tmp_path / "runs"
    _write(runs, "fm_ot", ["midpoint:1", "midpoint:2", "midpoint:4", "euler:1", "euler:2"])
    _write(runs, "fm_ot_reflow1", ["euler:1", "euler:2", "euler:4", "euler:8"])
    (figure,) = panels.fig4_panels(params, runs, tmp_path)
    fig = drawn["panels_checkerboard"]
    rows = [fig.axes[i * 7 : (i + 1) * 7] for i in range(2)]  # 2 densities, 3 midpoint rungs, dopri5, trajectories
    assert [row[0].get_ylabel() for row in rows] == ["fm_ot", "fm_ot_reflow1"]
    assert [ax.axison for ax in rows[0]] == [True] * 7
    assert [ax.axison for ax in rows[1]] == [True, True, False, False, False, True, True]
    assert [ax.get_title() for ax in rows[0][2:5]] == ["midpoint, NFE 2", "midpoint, NFE 4", "midpoint, NFE 8"]
