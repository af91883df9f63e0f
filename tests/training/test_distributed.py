"""Multi-process training: torchrun ranks with gloo on CPU, as real processes.

Why a 2-rank run matches a 1-process run, and how closely: both draw the same global batch, times,
noise and coupling from the one training generator (each rank keeps its rows), so the gradients are
the same sums taken in another order: the mean of 64 per-sample gradients against the average of two
means of 32 (DDP's all-reduce). In float64 a reordered sum of n terms moves by at most about
n u sum|g_i| (Higham, u = 2^-53), a relative change delta <= 64 u = 7e-15 of each gradient where the
terms do not cancel; a cancellation factor kappa = sum|g_i| / |sum g_i| multiplies it. Adam's step
lr m/(sqrt(v) + eps) is scale-invariant, so it moves by at most about 2 delta lr per step, and 30
steps at lr 1e-3 move the weights by <= 60 delta lr kappa = 4e-16 kappa. The bound 1e-12 allows
kappa up to 2500, and stays 1e9 times below what the training moves the weights (> 1e-3).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmexp.errors import ConfigError
from fmexp.networks.models import build_model
from fmexp.training.launch import World
from tests.helpers import (
    BIN,
    ROOT,
    assert_same_weights,
    killed_mid_training,
    sh,
    tiny_params,
    train_uninterrupted,
)

TOLERANCE = 1e-12  # derived in the module docstring


def _worker(out: Path, nproc: int) -> dict:
    """tests/ddp_worker.py as one plain process, or under torchrun with ``nproc`` ranks."""
    cmd = [sys.executable, "-m", "tests.ddp_worker", str(out)]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "tests.ddp_worker",
            str(out),
        ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.e2e
def test_two_ranks_at_global_batch_b_match_one_process_at_b(tmp_path: Path) -> None:
    one, two = _worker(tmp_path / "one.pt", 1), _worker(tmp_path / "two.pt", 2)
    torch.manual_seed(0)  # the worker's initialization
    init = build_model("mlp", dim=2, width=32, depth=2, time_embed_dim=8).double().state_dict()
    moved = max(float((one["model"][k] - init[k]).abs().max()) for k in init)
    assert moved > 1e-3  # the training moved the weights far beyond the tolerance
    for part in ("model", "ema"):
        diff = max(float((one[part][k] - two[part][k]).abs().max()) for k in one[part])
        assert diff <= TOLERANCE, (part, diff)
    assert [r["step"] for r in one["rows"]] == [r["step"] for r in two["rows"]] == [10, 20, 30]
    for a, b in zip(one["rows"], two["rows"], strict=False):  # the logged loss is the global batch's on every rank
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6) and a["val_loss"] == pytest.approx(
            b["val_loss"], rel=1e-9
        )


def test_a_rank_takes_its_equal_block_of_the_global_batch() -> None:
    blocks = [World(rank=r, size=4).share(256) for r in range(4)]
    assert [(s.start, s.stop) for s in blocks] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    with pytest.raises(
        ConfigError, match=r"train.batch_size: the global batch 100 must split evenly over the 3 processes"
    ):
        World(rank=0, size=3).share(100)


@pytest.mark.slow
@pytest.mark.e2e
def test_a_two_rank_run_killed_under_dvc_repro_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    params = tiny_params(methods=["fm_ot"], seeds=[0], workers=1)
    params["train"].update(steps=1500, eval_every=500, checkpoint_every=100, nproc=2)  # killed near step 100
    repo, killed_at = killed_mid_training(tmp_path / "repo", params)
    model = repo / "runs" / "checkerboard" / "fm_ot" / "train" / "0" / "model.pt"

    sh(str(BIN / "dvc"), "repro", "train-checkerboard-fm_ot", cwd=repo)
    info = json.loads((model.parent / "train.json").read_text())
    log = json.loads((repo / "runs" / "checkerboard" / "fm_ot" / "log" / "0" / "train.json").read_text())
    assert info["processes"] == 2 and log["resumed_from"] >= killed_at

    uninterrupted = train_uninterrupted(repo) / "train" / "0"
    assert json.loads((uninterrupted / "train.json").read_text())["processes"] == 2
    assert_same_weights(model, uninterrupted / "model.pt")


@pytest.mark.slow
@pytest.mark.e2e
def test_a_curve_failure_on_rank_0_stops_every_rank_with_its_error() -> None:
    """Rank 0 alone evaluates the curve; its failure reaches the other rank at the same row, so neither
    waits for a collective the other never joins (before the fix, rank 1 hung in the next all-reduce)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "tests.ddp_worker", "/dev/null", "ot", "20"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: evaluating the curve at step 20: injected failure at step 20" in proc.stdout, proc.stdout
