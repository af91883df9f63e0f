"""What params.yaml ships, pinned: the paper's methods and truncation, a per_dataset entry for every
dataset, convergence curves long enough to read, and Table 3's CIFAR-10 setting. A change to the
shipped recipe fails here, on purpose, and says which promise it breaks."""

from __future__ import annotations

import pytest
import torch
import yaml

from fmexp.config.load import load_params, run_for
from fmexp.flow.paths import VPPath
from tests.helpers import ROOT


def test_shipped_params_load() -> None:
    p = load_params(ROOT / "params.yaml")
    assert p.pipeline.methods == ["fm_ot", "fm_vp", "sm_vp", "fm_ve"]
    assert (p.methods["fm_ot"].objective, p.methods["fm_ot"].path) == ("fm", "ot")
    assert (p.methods["sm_vp"].objective, p.methods["sm_vp"].path) == ("sm", "vp")
    run = run_for(p, "checkerboard", "fm_vp", 2, own=False)  # the shared recipe: the base sections as they are
    assert run.method.path == "vp" and run.seed == 2 and run.train == p.train


def test_shipped_convergence_curves_have_twenty_rows() -> None:
    """Issue 11: a curve needs 20 or more rows to be seen as one (a row at every eval_every steps)."""
    p = load_params(ROOT / "params.yaml")
    for dataset in p.pipeline.datasets:
        train = run_for(p, dataset, p.pipeline.methods_of(dataset)[0], 0).train
        assert train.steps // train.eval_every >= 20, (dataset, train.steps, train.eval_every)


def test_every_dataset_has_a_per_dataset_entry() -> None:
    """dvc.yaml declares per_dataset.<dataset> as a param of train/sample/score: DVC fails on a missing key."""
    from fmexp.registry import names

    p = load_params(ROOT / "params.yaml")
    assert set(p.per_dataset) == set(names("toy_dataset", "image_dataset")) | set(p.pairs)


def test_cifar10_gets_the_papers_setting() -> None:
    """per_dataset.cifar10 gives Table 3's optimization and U-Net (256 channels, multipliers 1,2,2,2)."""
    from fmexp.config.plan import model_spec
    from fmexp.data.datasets import Dataset

    run = run_for(load_params(ROOT / "params.yaml"), "cifar10", "fm_ot", 0)
    assert (run.train.lr, run.train.batch_size, run.train.warmup_steps, run.train.steps) == (5e-4, 256, 45000, 391000)
    assert (run.train.weight_decay, run.train.grad_clip, run.train.precision, run.model.dropout) == (
        0.0,
        0.0,
        "fp32",
        0.0,
    )  # Adam, fp32
    images = Dataset("cifar10", torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), levels=256)
    spec = model_spec(run.model, images)
    assert (
        spec["_target_"] == "fmexp.networks.models.UNet"
        and spec["channels"] == 256
        and spec["channel_mults"] == [1, 2, 2, 2]
    )
    assert spec["in_channels"] == 3 and spec["resolution"] == 32 and spec["attention_resolutions"] == [16]


def test_cifar10_follows_table_3_as_reported() -> None:
    """Table 3 as PAPER.md reports it: after 45k warm-up steps the rate decays polynomially with power 1
    to zero at 391k (half the rate halfway, at 218k), and attention has heads of 64 channels: 8 heads
    on the 512 channels of the 16x16 level and of the middle block."""
    from fmexp.config.plan import model_spec
    from fmexp.data.datasets import Dataset
    from fmexp.networks.models import SelfAttention, build_model
    from fmexp.training.schedules import lr_factor

    run = run_for(load_params(ROOT / "params.yaml"), "cifar10", "fm_ot", 0)
    factor = [lr_factor(step, 45_000, 391_000, run.train.lr_schedule) for step in (45_000, 218_000, 391_000)]
    assert factor == pytest.approx([1.0, 0.5, 0.0], abs=1e-5)
    images = Dataset("cifar10", torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), levels=256)
    spec = model_spec(run.model, images)
    with torch.device("meta"):
        model = build_model(spec)
    heads = [(m.attn.embed_dim, m.attn.num_heads) for m in model.modules() if isinstance(m, SelfAttention)]
    assert heads and set(heads) == {(512, 8)}


def test_shipped_vp_methods_end_at_the_papers_truncation() -> None:
    """The paper trains VP on t in [0, 1 - 1e-5]. There T(s) ~ beta_min s, so the std at the end is
    sqrt(1 - exp(-beta_min 1e-5)) ~ 1e-3: params.yaml's VP methods set sigma_min = 1e-3, which must put
    the truncation s_min at 1e-5 (to within the s^2 term, 0.2%)."""
    methods = yaml.safe_load((ROOT / "params.yaml").read_text())["methods"]
    vp = {name: m for name, m in methods.items() if m["path"] == "vp"}
    assert set(vp) == {"fm_vp", "sm_vp", "fm_vp_cfg"}
    for m in vp.values():
        assert VPPath(sigma_min=m["sigma_min"]).s_min == pytest.approx(1e-5, rel=2e-3)


def test_each_methods_settings_are_its_tuning_studys_best() -> None:
    """params.yaml runs each method at the settings that the shipped tuning studies chose (per method, and
    shared where a study says so), and each study's grid holds the shared recipe for every method."""
    import pandas as pd

    from fmexp.report.tuning import completed, shared_recipe, tuned_settings

    params = load_params(ROOT / "params.yaml")
    assert params.sweep.tuning, "no tuning study ships"
    for name in params.sweep.tuning:
        folder = ROOT / "reports" / "sweeps" / name
        cfg = yaml.safe_load((folder / "study.yaml").read_text())["config"]
        trials = completed(pd.read_csv(folder / "trials.csv"))
        (objective,) = cfg["objectives"]
        chosen = tuned_settings(trials, objective["metric"], objective["direction"], cfg.get("shared", []))
        assert set(chosen) == set(params.pipeline.methods), name
        for method, values in chosen.items():
            run = run_for(params, cfg["dataset"], method, 0)
            for key, value in values.items():
                section, field = key.split(".")
                assert getattr(getattr(run, section), field) == value, (name, method, key)
            shared = shared_recipe(params, cfg["dataset"], method, list(values))
            at_shared = trials[trials.params_method == method]
            for key, value in shared.items():
                at_shared = at_shared[at_shared[f"params_{key}"] == value]
            assert len(at_shared) == 1, (name, method, shared)  # the shared recipe is a point of the grid
