"""params.yaml schema: the shipped file loads; every kind of bad input names the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fmexp.config.load import load_params, run_config, run_for
from fmexp.config.schema import Params, RunConfig
from fmexp.errors import ConfigError
from tests.helpers import ROOT, tiny_params, write_yaml


def test_params_are_validated_once_per_text_and_overrides_and_each_caller_gets_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stage under DVC loads params.yaml twice (to check dvc.yaml, and to run): validated once."""
    from fmexp.config import load

    calls: list[tuple[object, ...]] = []
    validated = load._validated

    def counted(*args: Any) -> Params:
        calls.append(args)
        return validated(*args)

    monkeypatch.setattr(load, "_validated", counted)
    path = write_yaml(tmp_path / "params.yaml", tiny_params())
    first, second = load_params(path), load_params(path)
    assert len(calls) == 1 and first == second and first is not second
    first.train.lr = 1.0
    assert load_params(path).train.lr != 1.0 and len(calls) == 1  # a caller's edit stays its own
    edited = tiny_params()
    edited["train"]["lr"] = 3e-4
    write_yaml(path, edited)
    assert load_params(path).train.lr == 3e-4 and len(calls) == 2  # a new text is validated anew
    assert load_params(path, ["train.steps=7"]).train.steps == 7 and len(calls) == 3  # and new overrides


def test_overrides_use_hydra_grammar(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "params.yaml", tiny_params())
    p = load_params(
        path, ["train.lr=3e-4", "pipeline.seeds=[0,1,2]", "+methods.fm_ot_mb={objective: fm, path: ot, coupling: ot}"]
    )
    assert p.train.lr == 3e-4 and p.pipeline.seeds == [0, 1, 2]
    assert p.methods["fm_ot_mb"].coupling == "ot" and p.methods["fm_ot_mb"].sigma_min == 1e-4


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p["train"].update(lrr=1.0), r"train\.lrr"),
        (lambda p: p["train"].update(steps="many"), r"train\.steps"),
        (lambda p: p["methods"]["fm_ot"].update(sigma_min=-1e-3), r"methods\.fm_ot\.sigma_min"),
        (
            lambda p: p["methods"]["fm_ot"].update(path="otp"),
            r"methods\.fm_ot\.path: 'otp' is not one of \['bridge', 'brownian_bridge', 'cosine', 'linear_vp', 'ot',"
            r" 'polynomial', 've', 'vp'\];"
            r" did you mean 'ot'",
        ),
        (
            lambda p: p["methods"]["fm_ot"].update(objective="sm"),
            r"methods\.fm_ot: objective 'sm' needs a path with mu_0 = a_0 x_1, a_0 > 0 \(vp, ve\);"
            r" CondOTPath has a_0 = 0",
        ),
        (lambda p: p["train"].update(steps=0), r"train\.steps: must be a positive finite number"),
        (lambda p: p["sample"].update(method="rk45"), r"sample\.method"),
        (lambda p: p["sample"].update(fixed_solvers=["dopri5"]), r"sample\.fixed_solvers"),
        (lambda p: p["sample"].update(grids=["karras"]), r"sample\.grids: 'karras' is not one of \['edm', 'uniform'\]"),
        (lambda p: p["score"].update(few_step="heun2@karras"), r"score\.few_step: 'heun2@karras' must be a fixed-step"),
        (lambda p: p["score"].update(few_step_nfe=0), r"score\.few_step_nfe: must be a positive"),
        (
            lambda p: p["pipeline"].update(methods=["fm_xx"]),
            r"pipeline\.methods: 'fm_xx' is not one of"
            r" \['fm_ot', 'fm_ot_cfg', 'fm_ve', 'fm_vp', 'fm_vp_cfg', 'icfm', 'otcfm', 'sbcfm', 'sm_vp'\]",
        ),
        (lambda p: p["pipeline"].update(datasets=["mnist2d"]), r"pipeline\.datasets"),
        (lambda p: p["score"].update(divergence="skilling"), r"score\.divergence"),
        (
            lambda p: p["train"].update(nproc=3),
            r"train\.batch_size: 64 must split evenly over train\.nproc=3 processes",
        ),
        (lambda p: p["train"].update(nproc=0), r"train\.nproc: must be a positive finite number"),
        (
            lambda p: p["score"].update(density_times=[0.5, 1.5]),
            r"score\.density_times: must be a non-empty list of times in \[0, 1\]",
        ),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, edit, expected: str) -> None:
    p = tiny_params()
    edit(p)
    path = write_yaml(tmp_path / "params.yaml", p)
    with pytest.raises(ConfigError, match=expected) as info:
        load_params(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.stepz=3", r"unknown key: 'train\.stepz' is not one of .*did you mean 'train\.steps'\?"),
        ("train.lr=[", r"train\.lr=\["),
        ("train.lr=choice(1,2)", "is a sweep"),
        ("+methods.x={pathh: vp}", r"methods\.x.*pathh"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: str) -> None:
    path = write_yaml(tmp_path / "params.yaml", tiny_params())
    with pytest.raises(ConfigError, match=expected):
        load_params(path, [override])


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: [\n")
    with pytest.raises(ConfigError, match=rf"{path}: invalid YAML"):
        load_params(path)


def test_run_config_validates_overrides() -> None:
    with pytest.raises(ConfigError, match=r"method\.path: 'xx'"):
        run_config(RunConfig(), ["method.path=xx"], "here")


def test_cli_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    write_yaml(tmp_path / "params.yaml", tiny_params())
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp", "train", "--dataset", "checkerboard", "--method", "fm_ot", "train.steps=-5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "params.yaml" in proc.stderr and "train.steps" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_per_dataset_overrides_apply_to_their_dataset_only() -> None:
    p = load_params(ROOT / "params.yaml")
    digits, board = run_for(p, "digits", "fm_ot", 0), run_for(p, "checkerboard", "fm_ot", 0)
    assert (digits.model.channels, digits.train.batch_size, digits.sample.n_samples) == (24, 64, 1077)
    assert (board.model, board.train, board.sample, board.score) == (p.model, p.train, p.sample, p.score)


def test_command_line_overrides_win_over_per_dataset(tmp_path: Path) -> None:
    params = tiny_params()
    params["per_dataset"]["digits"] = ["train.steps=500", "train.batch_size=16", "model.channel_mults=[1,2,2]"]
    path = write_yaml(tmp_path / "params.yaml", params)
    run = run_for(load_params(path, ["train.steps=7", "model=" + "{channels: 4}"]), "digits", "fm_ot", 0)
    assert (run.train.steps, run.train.batch_size) == (7, 16)  # the command line's steps, the file's batch size
    assert run.model.channels == 4 and run.model.channel_mults == [
        1,
        2,
    ]  # the section was given: per_dataset model.* dropped


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"mnist2d": []}, r"per_dataset\.mnist2d: 'mnist2d' is not one of"),
        (
            {"digits": ["method.sigma_min=0.1"]},
            r"per_dataset\.digits: 'method\.sigma_min=0\.1' must set a key of \['model', 'train', 'sample', 'score'\]",
        ),
        ({"digits": ["pipeline.seeds=[0]"]}, r"per_dataset\.digits: 'pipeline\.seeds=\[0\]' must set"),
        ({"digits": ["train.steps=0"]}, r"per_dataset\.digits: train\.steps: must be a positive finite number"),
        ({"digits": ["train.stepz=3"]}, r"per_dataset\.digits: unknown key: 'train\.stepz'"),
        ({"digits": ["train.steps=["]}, r"per_dataset\.digits"),
    ],
)
def test_bad_per_dataset_entries_name_file_and_key(tmp_path: Path, entry: dict, expected: str) -> None:
    params = tiny_params()
    params["per_dataset"].update(entry)
    path = write_yaml(tmp_path / "params.yaml", params)
    with pytest.raises(ConfigError, match=expected) as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_a_methods_overrides_apply_after_per_dataset_and_before_the_command_line(tmp_path: Path) -> None:
    params = tiny_params()
    params["per_dataset"]["digits"] = ["train.lr=4e-3", "train.steps=500"]
    params["methods"]["fm_vp"]["overrides"] = {"digits": ["train.lr=2e-3", "train.time_sampler=uniform"]}
    path = write_yaml(tmp_path / "params.yaml", params)
    p = load_params(path)
    vp, ot = run_for(p, "digits", "fm_vp", 0), run_for(p, "digits", "fm_ot", 0)
    assert (vp.train.lr, vp.train.steps, ot.train.lr) == (2e-3, 500, 4e-3)  # fm_vp's own lr; fm_ot keeps per_dataset's
    assert run_for(p, "checkerboard", "fm_vp", 0).train.lr == p.train.lr  # digits' entry only
    assert run_for(load_params(path, ["train.lr=1e-3"]), "digits", "fm_vp", 0).train.lr == 1e-3  # the command line wins


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"mnist2d": []}, r"methods\.fm_vp\.overrides\.mnist2d: 'mnist2d' is not one of"),
        ({"digits": ["method.path=ot"]}, r"methods\.fm_vp\.overrides\.digits: 'method\.path=ot' must set a key of"),
        ({"digits": ["train.lr=-1"]}, r"methods\.fm_vp\.overrides\.digits: train\.lr: must be"),
    ],
)
def test_bad_method_overrides_name_file_and_key(tmp_path: Path, overrides: dict, expected: str) -> None:
    params = tiny_params()
    params["methods"]["fm_vp"]["overrides"] = overrides
    path = write_yaml(tmp_path / "params.yaml", params)
    with pytest.raises(ConfigError, match=expected) as info:
        load_params(path)
    assert str(path) in str(info.value)
