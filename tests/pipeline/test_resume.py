"""Long runs survive a kill: a training run killed by SIGKILL under `dvc repro`
resumes from its checkpoint on the rerun, and ends with the weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmexp.config.load import load_params, run_for
from fmexp.config.plan import training_key
from fmexp.data.datasets import load_dataset
from fmexp.errors import ConfigError
from fmexp.pipeline.layout import RunFiles
from fmexp.pipeline.stages.sample import sample_run
from fmexp.pipeline.stages.train import train_run
from tests.helpers import (
    BIN,
    assert_same_weights,
    killed_mid_training,
    sh,
    tiny_params,
    train_uninterrupted,
    write_yaml,
)


@pytest.mark.slow
@pytest.mark.e2e
def test_sigkill_under_dvc_repro_then_rerun_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    params = tiny_params(methods=["fm_ot"], seeds=[0], workers=1)
    params["train"].update(steps=1500, eval_every=100, checkpoint_every=100)  # killed near step 100: far from the end
    repo, killed_at = killed_mid_training(tmp_path / "repo", params)
    checkpoints = repo / "runs" / "checkerboard" / "fm_ot" / "checkpoints"
    model = repo / "runs" / "checkerboard" / "fm_ot" / "train" / "0" / "model.pt"

    sh(
        str(BIN / "dvc"), "repro", "train-checkerboard-fm_ot", cwd=repo
    )  # DVC deletes train/ first; the checkpoint is not in it
    info = json.loads((repo / "runs" / "checkerboard" / "fm_ot" / "log" / "0" / "train.json").read_text())
    assert info["resumed_from"] >= killed_at and not list(checkpoints.glob("*.pt"))

    uninterrupted = train_uninterrupted(repo)
    assert_same_weights(model, uninterrupted / "train" / "0" / "model.pt")
    assert (repo / "runs" / "checkerboard" / "fm_ot" / "curve.csv").read_text() == (
        uninterrupted / "curve.csv"
    ).read_text()
    live = Path("checkerboard", "fm_ot", "live", "0", "plots", "metrics", "train_loss.tsv")
    # the resumed run replayed its checkpoint's rows into a fresh DVCLive folder: the uninterrupted run's file
    assert (repo / "runs" / live).read_text() == (repo / "uninterrupted" / live).read_text()
    assert len((repo / "runs" / live).read_text().splitlines()) == 1 + 1500 // 100


def _run(tmp_path: Path, **train):
    path = write_yaml(tmp_path / "params.yaml", tiny_params())
    run = run_for(load_params(path, [f"train.{k}={v}" for k, v in train.items()]), "checkerboard", "fm_ot", 0)
    return run, load_dataset("checkerboard", run.data.n_train, run.data.n_test, run.data.seed)


def test_a_checkpoint_of_another_config_is_never_resumed(tmp_path: Path) -> None:
    run, data = _run(tmp_path, steps=40, checkpoint_every=10)
    files = RunFiles(tmp_path / "runs", 0)
    other, _ = _run(tmp_path, steps=40, checkpoint_every=10, lr=1e-3)
    assert training_key(other) != training_key(run)
    assert training_key(_run(tmp_path, steps=40, checkpoint_every=20)[0]) == training_key(
        run
    )  # how often it saves is not config
    planted = files.checkpoint(training_key(other))
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"the unfinished run of another lr")
    train_run(run, data, files, progress=False)
    info = json.loads(files.train_info.read_text())
    assert json.loads(files.log("train").read_text())["resumed_from"] == 0
    assert info["plan"]["training_key"] == training_key(run)
    assert not planted.exists() and not list(planted.parent.iterdir())


def test_sample_refuses_a_model_short_of_train_steps(tmp_path: Path) -> None:
    run, data = _run(tmp_path, steps=20)
    files = RunFiles(tmp_path / "runs", 0)
    train_run(run, data, files, progress=False)
    longer, _ = _run(tmp_path, steps=30)
    with pytest.raises(ConfigError, match=r"model\.pt was trained for 20 steps, short of train\.steps=30"):
        sample_run(longer, data, files)
