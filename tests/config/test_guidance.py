"""Guidance's bad input exits 2 before any work, naming the key: w != 0 without label dropout, a label
dropout outside [0, 1), a dataset without labels, a scale of the metrics that is not sampled; and a study
that optimizes a conditional metric of an unconditional run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fmexp.cli import main
from fmexp.config.plan import model_spec
from fmexp.config.schema import ModelConfig
from fmexp.data.datasets import Dataset
from fmexp.errors import ConfigError
from tests.helpers import tiny_params, write_yaml


def guided_params(**method: object) -> dict:
    p = tiny_params(datasets=["digits"], methods=["fm_ot_cfg"], seeds=[0])
    p["methods"]["fm_ot_cfg"]["overrides"] = {"digits": ["train.label_dropout=0.2", "sample.guidance=[0,1]"]}
    p["methods"]["fm_ot_cfg"].update(method)
    return p


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["train.label_dropout=0"],
            r"a guidance scale w=1\.0 needs the unconditional field .* train\.label_dropout > 0",
        ),
        (["train.label_dropout=1.0"], r"train\.label_dropout must lie in \[0, 1\), got 1\.0"),
        (["train.label_dropout=null"], r"sample\.guidance: \[0\.0, 1\.0\] needs a class-conditional model"),
        (["score.guidance_scale=2"], r"score\.guidance_scale: 2\.0 must be one of sample\.guidance \[0\.0, 1\.0\]"),
        (["sample.guidance_sampler=rk5"], r"sample\.guidance_sampler: 'rk5' must be a fixed-step solver"),
        (["sample.guidance_sampler=heun2", "sample.guidance_nfe=3"], r"sample\.guidance_nfe: 3 is not a whole number"),
    ],
)
def test_bad_guidance_exits_2_naming_the_key(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, overrides: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    p = guided_params()
    p["methods"]["fm_ot_cfg"]["overrides"]["digits"] += overrides
    write_yaml(tmp_path / "params.yaml", p)
    before = sorted(tmp_path.rglob("*"))
    assert main(["train", "--dataset", "digits", "--method", "fm_ot_cfg"]) == 2
    err = capsys.readouterr().err
    assert re.search("methods.fm_ot_cfg.overrides.digits: " + expected, err), err
    assert "Traceback" not in err and sorted(tmp_path.rglob("*")) == before  # before any work: nothing written


def test_a_conditional_model_on_data_without_labels_exits_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / "params.yaml", tiny_params(seeds=[0]))
    assert main(["train", "--dataset", "checkerboard", "--method", "fm_ot", "train.label_dropout=0.1"]) == 2
    err = capsys.readouterr().err
    assert "train.label_dropout: a class-conditional model needs labelled images" in err and "Traceback" not in err


def test_an_image_folder_without_class_subfolders_has_no_labels() -> None:
    """An image folder whose files sit at its top has no labels: the model's spec refuses, naming the key."""
    images = Dataset("imagefolder", torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), levels=256)
    with pytest.raises(ConfigError, match=r"train\.label_dropout: a class-conditional model needs labels"):
        model_spec(ModelConfig(channels=8), images, conditional=True)
    labelled = Dataset(
        "imagefolder",
        torch.zeros(3, 1, 8, 8),
        torch.zeros(1, 1, 8, 8),
        levels=256,
        train_labels=torch.tensor([0, 2, 1]),
    )
    assert model_spec(ModelConfig(channels=8), labelled, conditional=True)["num_classes"] == 3
    assert "num_classes" not in model_spec(ModelConfig(channels=8), labelled)  # unconditional: no embedding


def test_a_study_of_guided_metrics_needs_a_conditional_run(tmp_path: Path, monkeypatch) -> None:
    from fmexp.sweep.study import load_study

    monkeypatch.chdir(tmp_path)
    p = guided_params()
    p["methods"]["fm_ot_cfg"]["overrides"] = {}
    write_yaml(tmp_path / "params.yaml", p)
    study = {
        "study": "g",
        "base": "params.yaml",
        "dataset": "digits",
        "method": "fm_ot_cfg",
        "search_space": {"score.guidance_scale": "choice(0, 1)"},
        "objectives": [{"metric": "guided_fid", "direction": "minimize"}],
        "sampler": {"name": "grid", "seed": 0},
        "n_trials": 2,
        "seeds": [0],
    }
    with pytest.raises(ConfigError, match=r"objectives: \['guided_fid'\] are a class-conditional run's metrics"):
        load_study(write_yaml(tmp_path / "studies" / "g.yaml", study))
    study["overrides"] = ["train.label_dropout=0.2", "sample.guidance=[0,1]"]
    assert load_study(write_yaml(tmp_path / "studies" / "g.yaml", study)).config.n_trials == 2


def test_the_shipped_guidance_study_loads() -> None:
    from fmexp.sweep.study import load_study
    from tests.helpers import ROOT

    study = load_study(ROOT / "studies" / "guidance.yaml", reports_dir=Path("/nonexistent"))
    assert study.base_run.train.label_dropout == 0.2 and study.base_run.sample.guidance == [0.5, 1.0, 2.0]
