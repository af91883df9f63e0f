"""The command line on bad input: one paragraph naming the file, the key or the missing stage and the
command that makes it; exit status 2; no traceback; nothing written. And ``fmexp config``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fmexp.cli import main
from tests.helpers import ROOT, write_yaml


def _fails(argv: list[str], capsys, *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    for text in expected:
        assert text in err, err
    return err


TRAIN = ["train", "--dataset", "checkerboard", "--method", "fm_ot"]


def test_a_misspelt_dataset_or_method(workdir: Path, capsys) -> None:
    _fails(
        ["train", "--dataset", "checkerbord", "--method", "fm_ot"],
        capsys,
        "dataset: 'checkerbord' is not one of",
        "did you mean 'checkerboard'?",
    )
    _fails(
        ["train", "--dataset", "checkerboard", "--method", "fm_tt"],
        capsys,
        "method: 'fm_tt' is not one of ['fm_ot', 'fm_ot_cfg', 'fm_ve', 'fm_vp', 'fm_vp_cfg', 'icfm', 'otcfm', 'sbcfm',"
        " 'sm_vp']",
        "did you mean 'fm_ot'?",
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"]


def test_a_stage_before_its_upstream_names_the_command(workdir: Path, capsys) -> None:
    _fails(
        TRAIN,
        capsys,
        "data/checkerboard.pt, which does not exist",
        "python -m fmexp prepare --dataset checkerboard",
        "dvc repro prepare-checkerboard",
    )
    assert main(["prepare"]) == 0
    _fails(
        ["sample", "--dataset", "checkerboard", "--method", "fm_ot"],
        capsys,
        "runs/checkerboard/fm_ot/train/0/model.pt",
        "python -m fmexp train --dataset checkerboard --method fm_ot",
        "dvc repro train-checkerboard-fm_ot",
    )
    assert not (workdir / "runs").exists()


def test_a_truncated_file_is_named(workdir: Path, capsys) -> None:
    assert main(["prepare"]) == 0
    data = workdir / "data" / "checkerboard.pt"
    data.write_bytes(data.read_bytes()[:100])
    _fails(TRAIN, capsys, f"{Path('data') / 'checkerboard.pt'}: cannot be read", "truncated or corrupt")
    assert not (workdir / "runs" / "checkerboard" / "fm_ot" / "train").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_learning_rate(workdir: Path, capsys, value: str) -> None:
    _fails([*TRAIN, f"train.lr={value}"], capsys, "params.yaml", "train.lr: must be a positive finite number")


def test_an_unwritable_output_folder_is_refused_before_the_work(workdir: Path, capsys) -> None:
    assert main(["prepare"]) == 0
    (workdir / "runs").write_text("a file where the runs folder goes")
    _fails(TRAIN, capsys, "cannot write outputs here", "--runs-dir")
    _fails(["prepare", "--data-dir", "runs/data"], capsys, "runs/data: cannot write outputs here")


def test_a_run_folder_that_cannot_be_written_is_refused_before_the_work(workdir: Path, capsys) -> None:
    """runs/ is writable, but one seed's folder cannot be made (a file stands in its place): exit 2 naming
    it, before any training (no other seed's files either)."""
    assert main(["prepare"]) == 0
    blocker = workdir / "runs" / "checkerboard" / "fm_ot" / "train" / "1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    _fails([*TRAIN, "pipeline.seeds=[0,1]"], capsys, f"{blocker.relative_to(workdir)}: cannot write outputs here")
    assert not (workdir / "runs" / "checkerboard" / "fm_ot" / "train" / "0" / "model.pt").exists()


def test_a_duplicate_key_in_params(workdir: Path, capsys) -> None:
    text = (workdir / "params.yaml").read_text()
    (workdir / "params.yaml").write_text(text + "train:\n  lr: 1.0\n")
    _fails(TRAIN, capsys, "params.yaml: invalid YAML", "duplicate key 'train'")


def test_negative_seed_and_unknown_keys(workdir: Path, capsys) -> None:
    _fails([*TRAIN, "pipeline.seeds=[-1]"], capsys, "pipeline.seeds: -1 must be >= 0")
    _fails([*TRAIN, "train.stepz=3"], capsys, "unknown key: 'train.stepz'", "did you mean 'train.steps'?")
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["trian"] = params.pop("train")
    write_yaml(workdir / "params.yaml", params)
    _fails(TRAIN, capsys, "trian", "did you mean 'train'?")


@pytest.mark.e2e
def test_exit_status_and_stderr_of_the_real_command(workdir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp", "sample", "--dataset", "checkerboard", "--method", "fm_ot"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one paragraph


def test_config_prints_the_resolved_run(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 8gaussians run takes its steps from params.yaml's per_dataset entry, and an override wins."""
    monkeypatch.chdir(ROOT)
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    steps = int(next(e for e in shipped["per_dataset"]["8gaussians"] if e.startswith("train.steps=")).split("=")[1])
    assert main(["config", "--dataset", "8gaussians", "--method", "fm_vp"]) == 0
    run = yaml.safe_load(capsys.readouterr().out)
    assert run["train"]["steps"] == steps and run["method"]["path"] == "vp" and run["dataset"] == "8gaussians"
    assert main(["config", "--dataset", "8gaussians", "--method", "fm_vp", "train.lr=1e-4"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["lr"] == 1e-4
    assert main(["config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["methods"].keys() == shipped["methods"].keys()


@pytest.mark.e2e
def test_progress_lines_when_stderr_is_no_terminal(workdir: Path) -> None:
    """Under DVC or CI stderr is a pipe: a line per curve row of each seed (from the worker processes
    too) and one at the end of the stage, with timings."""
    assert main(["prepare"]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp", *TRAIN, "pipeline.seeds=[0,1]", "pipeline.workers=2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    steps = yaml.safe_load((workdir / "params.yaml").read_text())["train"]["steps"]
    assert {line.split(" step ")[0].split()[-1] for line in lines if f"step {steps}/{steps}: loss" in line} == {
        "0",
        "1",
    }
    assert sum("train checkerboard/fm_ot seed" in line and "done in" in line for line in lines) == 2
    assert "train checkerboard/fm_ot: done in" in lines[-1]


@pytest.mark.e2e
def test_a_failed_solve_names_the_seed_with_status_1(workdir: Path) -> None:
    """A fault of the run, not bad input: the real command exits 1 with one line naming the stage, the
    run and the seed, no traceback, and the failed seed's samples are not written."""
    import torch

    assert main(["prepare"]) == 0 and main(TRAIN + ["pipeline.seeds=[0,1]"]) == 0
    model = workdir / "runs/checkerboard/fm_ot/train/1/model.pt"
    state = torch.load(model, weights_only=False)
    state["ema_weights"] = {k: torch.full_like(v, float("nan")) for k, v in state["ema_weights"].items()}
    torch.save(state, model)  # seed 1's field is NaN everywhere: its dopri5 solve cannot finish
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fmexp",
            "sample",
            "--dataset",
            "checkerboard",
            "--method",
            "fm_ot",
            "pipeline.seeds=[0,1]",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sample checkerboard/fm_ot seed 1: dopri5"), last
    assert (workdir / "runs/checkerboard/fm_ot/sample/0/samples.pt").exists()  # the seed that finished keeps its files
    assert not (workdir / "runs/checkerboard/fm_ot/sample/1/samples.pt").exists()


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "did you mean 'train'?" in err


def test_every_command_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    from fmexp.cli import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert f"usage: fmexp {command}" in capsys.readouterr().out


@pytest.mark.e2e
def test_python_m_fmexp_sweep_is_the_fmexp_sweep_command() -> None:
    """Both parse with one parser: the same usage, the same refusal of a study that does not exist."""
    runs = [
        subprocess.run([sys.executable, "-m", *cmd, "no_such_study"], cwd=ROOT, capture_output=True, text=True)
        for cmd in (["fmexp.sweep"], ["fmexp", "sweep"])
    ]
    for proc in runs:
        assert proc.returncode == 2 and "studies/no_such_study.yaml: no such study" in proc.stderr, proc.stderr
        assert "did you mean" in proc.stderr or "ot_vs_vp" in proc.stderr
    help_ = [
        subprocess.run([sys.executable, "-m", *cmd, "--help"], cwd=ROOT, capture_output=True, text=True).stdout
        for cmd in (["fmexp.sweep"], ["fmexp", "sweep"])
    ]
    import re

    options = [re.findall(r"^  (--?[a-z-]+)", h, re.M) for h in help_]
    assert options[0] == options[1] and "--workers" in options[0] and "--archive-changed" in options[0]


def test_user_errors_share_one_base_and_run_errors_another() -> None:
    from fmexp import errors

    assert issubclass(errors.ConfigError, errors.UserError) and issubclass(errors.ArtifactError, errors.UserError)
    for e in (errors.SolverError, errors.TrainingDiverged, errors.RunFailed):
        assert issubclass(e, errors.RunError) and not issubclass(e, errors.UserError)


@pytest.mark.e2e
def test_under_dvc_a_stale_dvc_yaml_is_refused_before_any_work(tmp_path: Path) -> None:
    """`dvc exp run -S pipeline.datasets=[8gaussians]` changes params.yaml but not the generated dvc.yaml:
    the stage DVC runs says so (status 2) instead of running the old pipeline under the new label."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["pipeline"]["datasets"] = ["8gaussians"]
    params["sweep"]["tuning"] = []  # the tuning studies' shipped results are not in this folder
    write_yaml(tmp_path / "params.yaml", params)
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    env = {**os.environ, "DVC_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def prepare(**extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "fmexp", "prepare", "pipeline.datasets=[8gaussians]"]
        return subprocess.run(command, cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True)

    proc = prepare(DVC_STAGE="prepare-8gaussians")
    assert proc.returncode == 2 and "Run `fmexp dvc-yaml`" in proc.stderr, proc.stderr
    assert not (tmp_path / "data").exists()
    proc = prepare()  # by hand, outside DVC, the command runs
    assert proc.returncode == 0 and (tmp_path / "data" / "8gaussians.pt").exists(), proc.stderr
