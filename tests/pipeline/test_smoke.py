"""The GPU smoke profile, run on CPU at a tiny size on an image folder the test
writes: train, sample and score end to end, with the throughput line printed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import ROOT, tiny_params, write_yaml

pytestmark = pytest.mark.e2e

TINY = [
    "model.channels=8",
    "model.channel_mults=[1,2]",
    "model.num_res_blocks=1",
    "model.attention_resolutions=[]",
    "model.head_channels=8",  # cifar10's 64-channel heads do not divide 8 channels (the load says so, exit 2)
    "train.device=cpu",
    "train.steps=6",
    "train.batch_size=8",
    "train.warmup_steps=2",
    "train.eval_every=3",
    "train.checkpoint_every=3",
    "train.curve_points=4",
    "train.val_batch=8",
    "sample.n_samples=16",
    "sample.batch_size=8",
    "sample.ladder_samples=8",
    "sample.rtol=1e-3",
    "score.n_points=8",
    "score.batch_size=4",
    "data.image_size=8",
]


def _smoke(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    from PIL import Image

    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(raw / f"{i:02d}.png")
    params = tiny_params()
    params["data"]["root"] = str(raw)
    params["per_dataset"]["cifar10"] = yaml.safe_load((ROOT / "params.yaml").read_text())["per_dataset"][
        "cifar10"
    ]  # the shipped profile
    path = write_yaml(tmp_path / "params.yaml", params)
    return subprocess.run(
        [sys.executable, "-m", "fmexp", "smoke", "--params", str(path), "--out", str(tmp_path / "smoke"), *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_smoke_profile_trains_samples_and_scores_an_image_folder_without_cifar10(tmp_path: Path) -> None:
    proc = _smoke(tmp_path, *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no FID" in proc.stdout  # no Inception weights here: said, and scored without FID
    line = proc.stdout.strip().splitlines()[-1]
    assert (
        line.startswith("smoke imagefolder, cpu: training")
        and "images/s" in line
        and "peak GPU memory n/a (no GPU)" in line
    )
    metrics = json.loads(
        (tmp_path / "smoke" / "runs" / "imagefolder" / "fm_ot" / "score" / "0" / "metrics.json").read_text()
    )
    assert math.isfinite(metrics["bpd"]) and metrics["fid_backend"] == "none"
    trained = json.loads(
        (tmp_path / "smoke" / "runs" / "imagefolder" / "fm_ot" / "train" / "0" / "train.json").read_text()
    )
    assert (
        trained["run"]["model"]["channels"] == 8 and trained["run"]["train"]["lr"] == 5e-4
    )  # the overrides over cifar10's profile
    assert trained["run"]["train"]["ema_decay"] == 0.9999


def test_a_bad_override_exits_2_naming_the_key(tmp_path: Path) -> None:
    proc = _smoke(tmp_path, "train.stepz=3")
    assert proc.returncode == 2 and "train.stepz" in proc.stderr and "Traceback" not in proc.stderr
