"""End to end: `dvc repro` in a temporary git+dvc copy with tiny params, then the caching contract."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import BIN, dvc_repo, sh, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_repro_writes_metrics_tables_and_page(tiny_pipeline: Path) -> None:
    for method in ("fm_ot", "fm_vp"):
        summary = json.loads((tiny_pipeline / "runs" / "checkerboard" / method / "score" / "summary.json").read_text())
        assert set(summary["seeds"]) == {"0", "1"}
        for metrics in summary["seeds"].values():
            assert {"nll", "distance", "nfe", "nfe_nll"} <= set(metrics)
            assert not any("seconds" in k for k in metrics)  # timings go to log/, beside the outputs
            assert metrics["nfe"] > 0 and math.isfinite(metrics["nll"])
        assert (tiny_pipeline / "runs" / "checkerboard" / method / "train" / "1" / "model.pt").exists()
    table = pd.read_csv(tiny_pipeline / "reports" / "tables" / "checkerboard.csv", index_col=0)
    assert list(table.index) == ["fm_ot", "fm_vp"]
    p_values = [
        table[f"{c}_p_holm"].dropna() for c in ("nll", "distance", "nfe")
    ]  # paired and Holm-corrected: the best against each other method
    significant = sum(len(p) == len(table) - 1 and bool(p.lt(0.05).all()) for p in p_values)
    assert (tiny_pipeline / "reports" / "tables" / "checkerboard.md").read_text().count("**") == 2 * significant
    assert ("\\textbf" in (tiny_pipeline / "reports" / "tables" / "checkerboard.tex").read_text()) == (significant > 0)
    page = (tiny_pipeline / "reports" / "summary.html").read_text()
    assert "<h3>checkerboard</h3>" in page and page.count("data:image/png;base64,") >= 4
    assert "train.curve_tol: checkerboard 0.001, digits 0.01." in page  # the convergence caption: each dataset's own
    assert "http://" not in page and "https://" not in page  # self-contained
    for png in ("convergence", "nfe_error", "nfe_quality", "panels_checkerboard"):
        assert (tiny_pipeline / "reports" / "figures" / f"{png}.png").stat().st_size > 1000


def test_repro_scores_digits_in_the_papers_image_layout(tiny_pipeline: Path) -> None:
    """digits through dvc repro: bits/dim, FID with its backend and NFE per method, sample grids, FID against NFE."""
    for method in ("fm_ot", "fm_vp"):
        for metrics in json.loads((tiny_pipeline / "runs" / "digits" / method / "score" / "summary.json").read_text())[
            "seeds"
        ].values():
            assert metrics["fid_backend"] == "digits-classifier" and metrics["fid_classifier_accuracy"] >= 0.95
            keys = (
                "bpd",
                "bpd_se",
                "fid",
                "fid_equal_n",
                "fid_floor",
                "fid_floor_std",
                "fid_inf",
                "fid_heldout",
                "nfe",
            )
            assert all(math.isfinite(metrics[k]) for k in keys)
        science = json.loads((tiny_pipeline / "runs" / "digits" / method / "metrics.json").read_text())
        assert set(science) == {"bpd", "bpd_se", "fid", "fid_inf", "nfe", "nfe_nll"}
        fid_ladder = pd.read_csv(tiny_pipeline / "runs" / "digits" / method / "score" / "fid_ladder.csv")
        assert sorted(fid_ladder.seed.unique()) == [0, 1] and set(fid_ladder.solver) == {"euler", "rk4"}
    table = pd.read_csv(tiny_pipeline / "reports" / "tables" / "digits.csv", index_col=0)
    assert list(table.index) == ["fm_ot", "fm_vp"] and {"bpd_mean", "fid_std", "nfe_mean"} <= set(table.columns)
    header = (tiny_pipeline / "reports" / "tables" / "digits.md").read_text().splitlines()[0]
    assert "NLL (bits/dim)" in header and "FID (digits-classifier)" in header and "NFE" in header
    for png in ("grid_digits", "fid_nfe"):
        assert (tiny_pipeline / "reports" / "figures" / f"{png}.png").stat().st_size > 1000
    spec = torch.load(tiny_pipeline / "runs" / "digits" / "fm_ot" / "train" / "0" / "model.pt", weights_only=True)[
        "model_spec"
    ]
    assert (spec["_target_"], spec["in_channels"], spec["resolution"], spec["channels"]) == (
        "fmexp.networks.models.UNet",
        1,
        8,
        8,
    )  # per_dataset.digits
    page = (tiny_pipeline / "reports" / "summary.html").read_text()
    assert "<h3>digits</h3>" in page and "real held-out images score FID" in page and "FID∞" in page


def test_repro_samples_and_scores_guidance(tiny_pipeline: Path) -> None:
    """The conditional cell through dvc repro: its samples request labels in the training split's class
    proportions, w = 0 of the sweep is the ladder's midpoint rung from the same noise (one field, one solver),
    each w is scored per seed, and the report's guidance section and figures exist, outside the digits table."""
    from fmexp.flow.guidance import proportional_labels
    from fmexp.pipeline.layout import load_prepared

    folder = tiny_pipeline / "runs" / "digits" / "fm_ot_cfg"
    state = torch.load(folder / "sample" / "0" / "samples.pt", weights_only=True)
    data = load_prepared(tiny_pipeline / "data", "digits")
    assert torch.equal(state["labels"], proportional_labels(data.train_labels, 64, 10))
    assert set(state["guided"]) == {"0", "1", "4"} and torch.equal(state["guided"]["0"], state["ladder"]["midpoint:4"])
    guidance = pd.read_csv(folder / "score" / "guidance.csv")
    assert sorted(guidance.seed.unique()) == [0, 1] and sorted(guidance.w.unique()) == [0, 1, 4]
    assert guidance.accuracy.between(0, 1).all() and (guidance.nfe == 8).all()
    assert guidance.set_index("w").rows_per_call.to_dict() == {0: 1, 1: 2, 4: 2}
    seed0 = json.loads((folder / "score" / "0" / "metrics.json").read_text())
    at_one = guidance[(guidance.seed == 0) & (guidance.w == 1)].iloc[0]
    assert seed0["guided_fid"] == pytest.approx(at_one.fid) and seed0["guided_accuracy"] == pytest.approx(
        at_one.accuracy
    )
    assert math.isfinite(seed0["bpd_null"]) and seed0["bpd_null"] != seed0["bpd"] and 0 <= seed0["accuracy"] <= 1
    table = pd.read_csv(tiny_pipeline / "reports" / "tables" / "digits.csv", index_col=0)
    assert "fm_ot_cfg" not in table.index  # -log p(x | y) is no unconditional likelihood
    rows = pd.read_csv(tiny_pipeline / "reports" / "tables" / "guidance.csv")
    assert list(rows.w) == [0, 1, 4] and {"fid_p", "accuracy_p", "accuracy_9_mean"} <= set(rows.columns)
    page = (tiny_pipeline / "reports" / "summary.html").read_text()
    assert "Classifier-free guidance" in page and "under the null label" in page
    for png in ("guidance_tradeoff", "guidance_classes"):
        assert (tiny_pipeline / "reports" / "figures" / f"{png}.png").stat().st_size > 1000


def test_fid_is_over_all_samples_and_the_floor_at_their_n(tiny_pipeline: Path) -> None:
    """64 samples, 359 held-out images: the FID is the plain two-sample FID of all 64 against the training
    split, computed here without cached statistics; the floor is taken at 64 held-out images."""
    from fmexp.data.features import backend_kwargs, fid
    from fmexp.flow.units import CONDITIONAL_METRICS, SCORED
    from fmexp.pipeline.layout import load_prepared

    data = load_prepared(tiny_pipeline / "data", "digits")
    kwargs = backend_kwargs(
        "digits-classifier", None, torch.load(tiny_pipeline / "data" / "digits.pt", weights_only=True)
    )
    samples = torch.load(
        tiny_pipeline / "runs" / "digits" / "fm_ot" / "sample" / "0" / "samples.pt", weights_only=True
    )["samples"]
    metrics = json.loads((tiny_pipeline / "runs" / "digits" / "fm_ot" / "score" / "0" / "metrics.json").read_text())
    assert len(samples) == 64 and (metrics["fid_draws"], metrics["fid_n"], metrics["fid_floor_n"]) == (1, 64, 64)
    assert metrics["fid"] == pytest.approx(
        fid("digits-classifier", samples, data.train, data.levels, **kwargs), rel=1e-6
    )
    assert metrics["fid_floor"] == pytest.approx(
        fid("digits-classifier", data.test[:64], data.train, data.levels, **kwargs), rel=1e-6
    )
    assert metrics["fid_draw_std"] is None and "1 draws" in metrics["fid_draw_std_reason"]
    for kind, cell in (("image", "digits/fm_ot"), ("flat", "checkerboard/fm_ot"), ("image", "digits/fm_ot_cfg")):
        scored = json.loads((tiny_pipeline / "runs" / cell / "score" / "0" / "metrics.json").read_text())
        unconditional = not cell.endswith("_cfg")  # what a study may optimize is written
        assert set(SCORED[kind]) - {"train_seconds", *(CONDITIONAL_METRICS if unconditional else ())} <= set(scored)
        if cell == "checkerboard/fm_ot":  # every held-out point lies on the board, whose density is 1/32
            assert scored["nll_floor"] == pytest.approx(math.log(32), rel=1e-12)


def test_second_repro_runs_nothing(tiny_pipeline: Path) -> None:
    out = sh(str(BIN / "dvc"), "repro", cwd=tiny_pipeline)
    assert "Running stage" not in out


def test_dvc_metrics_hold_only_the_science(tiny_pipeline: Path) -> None:
    """Issue 11: no timings, no per-seed values; mean and std over seeds per dataset and method."""
    shown = json.loads(sh(str(BIN / "dvc"), "metrics", "show", "--json", cwd=tiny_pipeline))
    (files,) = [rev["data"] for rev in shown.values()]  # the workspace's, keyed "" or "workspace" by DVC version
    cells = {f"{d}/{m}" for d in ("checkerboard", "digits") for m in ("fm_ot", "fm_vp")} | {"digits/fm_ot_cfg"}
    assert set(files) == {f"runs/{cell}/metrics.json" for cell in cells}
    for path, entry in files.items():
        keys = {f"{k}.{s}" for k, stats in entry["data"].items() for s in stats}
        science = {"bpd", "bpd_se", "fid", "fid_inf"} if "digits" in path else {"nll", "nll_se", "w2"}
        if "_cfg" in path:  # a class-conditional cell's (docs/guidance.md)
            science |= {"bpd_null", "accuracy", "guided_fid", "guided_accuracy"}
        assert {k.split(".")[0] for k in keys} == science | {"nfe", "nfe_nll"}, keys
        assert not any("seconds" in k or "seed" in k for k in keys)


PLOTS = {
    "held-out NLL during training": "nll",
    "dopri5 NFE during training (Fig. 10)": "nfe",
    "validation loss during training": "val_loss",
    "sampling error against NFE (Fig. 7)": "error",
    "sample distance against NFE": "distance",
    "FID against NFE": "fid",
}
LIVE = "training loss, live (DVCLive)"


def test_dvc_plots_compare_methods_and_render_offline(tiny_pipeline: Path, tmp_path: Path) -> None:
    """`dvc plots show`: one plot per figure, a line per method (colour), solvers told apart (dash), a
    panel per dataset; with `fmexp offline-plots`'s template the page loads no script from the web."""
    shown = json.loads(sh(str(BIN / "dvc"), "plots", "show", "--json", cwd=tiny_pipeline))
    assert not shown.get("errors") and set(shown["data"]) == {*PLOTS, LIVE}
    (live,) = shown["data"].pop(LIVE)  # DVCLive's files: each seed's training loss, as the run wrote it
    values = live["content"]["data"]["values"]
    curve = pd.read_csv(tiny_pipeline / "runs" / "checkerboard" / "fm_ot" / "curve.csv")
    first = curve[curve.seed == 0]
    mine = [v for v in values if v["filename"].endswith("checkerboard/fm_ot/live/0/plots/metrics/train_loss.tsv")]
    assert [int(v["step"]) for v in mine] == list(first.step)
    assert [float(v["train_loss"]) for v in mine] == pytest.approx(list(first.train_loss), rel=1e-6)
    for title, (plot,) in shown["data"].items():
        spec = plot["content"]
        assert spec["encoding"]["y"]["field"] == PLOTS[title] and spec["encoding"]["color"]["field"] == "method"
        assert spec["encoding"]["column"]["field"] == "dataset"
        values = spec["data"]["values"]
        assert {p["method"] for p in values if p["dataset"] == "checkerboard"} in ({"fm_ot", "fm_vp"}, set())
        assert {p["method"] for p in values if p["dataset"] == "digits"} == {"fm_ot", "fm_vp", "fm_ot_cfg"}
        if "NFE" in title and "training" not in title:
            assert spec["encoding"]["strokeDash"]["field"] == "solver"
            assert {p["solver"] for p in values} == {"euler", "rk4", "midpoint"}  # the conditional cell's: midpoint
    sh(sys.executable, "-m", "fmexp", "offline-plots", cwd=tiny_pipeline)
    sh(str(BIN / "dvc"), "plots", "show", "-o", str(tmp_path / "plots"), cwd=tiny_pipeline)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert "<script src" not in page and "window.vegaEmbed=" in page
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): the page was not rendered")
    dom = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (tmp_path / "plots" / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    drawn = [w for w in re.findall(r'<svg[^>]*class="marks"[^>]*width="(\d+)"', dom) if int(w) > 0]
    assert len(drawn) == len(PLOTS) + 1, dom[:2000]  # and the live plot


def test_changing_the_tolerance_reruns_sampling_not_training(tiny_pipeline: Path) -> None:
    params = (tiny_pipeline / "params.yaml").read_text()
    (tiny_pipeline / "params.yaml").write_text(params.replace("rtol: 0.001", "rtol: 0.0001"))
    try:
        out = sh(str(BIN / "dvc"), "repro", "--dry", cwd=tiny_pipeline)
    finally:
        (tiny_pipeline / "params.yaml").write_text(params)
    # a dry run lists the stages whose own params changed; report follows them through its deps
    stages = {line.split("'")[1].split("-")[0] for line in out.splitlines() if line.startswith("Running stage")}
    assert stages == {"sample", "score", "report"}, out  # no sweep-<study> stage: the tiny params list no study


@pytest.mark.parametrize(
    "module, expected",
    [
        ("fmexp/pipeline/stages/score.py", {"score"}),
        ("fmexp/flow/metrics.py", {"prepare", "sample", "score", "report"}),
        ("fmexp/pipeline/stages/train.py", {"train"}),
    ],
)
def test_touching_a_stage_module_reruns_that_stage_and_what_follows(
    tiny_pipeline: Path, module: str, expected: set[str]
) -> None:
    """A score-only change lists score (and the report after it), never train."""
    source = (tiny_pipeline / module).read_text()
    (tiny_pipeline / module).write_text(source + "\n# touched\n")
    try:
        out = sh(str(BIN / "dvc"), "status", cwd=tiny_pipeline)
    finally:
        (tiny_pipeline / module).write_text(source)
    changed = {line.rstrip(":").split("-")[0] for line in out.splitlines() if line and not line.startswith(("\t", " "))}
    # the stages whose own deps changed; DVC's status lists only those, the report follows through its deps
    assert changed == expected, out


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_renders_in_headless_chromium_with_every_image(tiny_pipeline: Path, tmp_path: Path) -> None:
    """Load the page in a real browser; a script appended to a copy counts images that decoded."""
    page = (tiny_pipeline / "reports" / "summary.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " document.body.setAttribute('data-images', imgs.length + '/' +"
        " imgs.filter(i => i.complete && i.naturalWidth > 0).length); });</script>"
    )
    check = tmp_path / "check.html"
    check.write_text(page.replace("</body>", probe + "</body>"))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", check.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    marker = dom.split('data-images="')[1].split('"')[0]
    total, loaded = map(int, marker.split("/"))
    assert total >= 4 and loaded == total, marker
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1200,2400", f"--screenshot={shot}", check.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000


def test_the_docs_results_page_holds_each_table_as_written(tiny_pipeline: Path) -> None:
    """reports/tables/results.md, which docs/results.md includes, has every table of reports/tables/ verbatim."""
    tables = tiny_pipeline / "reports" / "tables"
    page = (tables / "results.md").read_text()
    written = [t for t in tables.glob("*.md") if t.name != "results.md"]
    assert written
    for table in written:
        assert table.read_text().strip() in page, table.name


@pytest.mark.slow
@pytest.mark.e2e
def test_same_content_same_bytes_and_the_way_back_to_the_baseline_retrains_nothing(tmp_path: Path) -> None:
    """docs/getting-started.md's loop: commit the baseline, run an experiment, return without retraining."""
    root = dvc_repo(tmp_path / "repo", tiny_params(methods=["fm_ot"], seeds=[0], workers=1))
    dvc, git = str(BIN / "dvc"), ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(dvc, "repro", cwd=root)
    baseline = (root / "dvc.lock").read_text()
    sh(*git, "add", "-A", cwd=root)
    sh(*git, "commit", "-q", "-m", "baseline", cwd=root)
    sh(dvc, "repro", "--force", cwd=root)  # every stage again: the same content must be the same bytes
    assert (root / "dvc.lock").read_text() == baseline, sh("git", "diff", "dvc.lock", cwd=root)
    sh(dvc, "exp", "run", "-S", "train.lr=2e-3", cwd=root)
    assert (root / "dvc.lock").read_text() != baseline  # the experiment's results are in the workspace
    sh("git", "checkout", "--", ".", cwd=root)
    sh(dvc, "checkout", cwd=root)
    assert (root / "dvc.lock").read_text() == baseline
    assert json.loads(sh(dvc, "status", "--json", cwd=root)) == {}  # every output is the baseline's, from the cache
    assert "Running stage" not in sh(dvc, "repro", cwd=root)
