"""Shared fixtures: a seeded global RNG, every path (registered, and a user's), and a working folder
with tiny params."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from fmexp.flow.paths import ProbabilityPath
from fmexp.registry import names, resolve


def _threads() -> int:
    """Torch threads for this process: two, or one under pytest-xdist (``make test``: ``-n 2``).

    Torch runs one OpenMP thread per core, and two processes doing so on 2 cores have run a step 10x
    slower (``fmexp.runtime.processes``). Under xdist every process of a test (this worker, and the
    dvc, stage, torchrun and sweep processes it starts, through ``OMP_NUM_THREADS``) runs one thread,
    so the two workers' processes share the cores without contending for them."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return 2
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    return 1


torch.set_num_threads(_threads())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group into the test's id
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` the tests that share a module- or session-scoped fixture of ours (the
    session's tiny pipeline, the extending example's run, ...) run on one worker, so that each is built
    once. (pytest 9.2 broke the groups, pytest-dev/pytest-xdist#1386: constraints.txt pins 9.1.1.)"""
    for item in items:
        definitions = getattr(item, "_fixtureinfo", None)
        for name, defs in definitions.name2fixturedefs.items() if definitions else ():
            if defs[-1].scope in ("module", "session") and defs[-1].baseid.startswith("tests"):
                item.add_marker(pytest.mark.xdist_group(f"{defs[-1].baseid}::{name}"))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global RNG state, so no test depends on the order it runs in."""
    torch.manual_seed(0)


USER_PATH = "plugins.paths.PowerDecayPath"
"""A path of a user's, from the example project (examples/extending/plugins): the closed-form suite is
every path's, built in or not."""
sys.path.insert(0, str(Path(__file__).parents[1] / "examples" / "extending"))


GAUSSIAN_PATHS = [n for n in names("path") if issubclass(resolve("path", n), ProbabilityPath)]
"""The registered paths ``p_t(x | x_1)`` from ``N(0, I)`` (eq. 10); the bridges between a coupled pair
(``fmexp.flow.bridges``) have their own tests."""


@pytest.fixture(params=[*GAUSSIAN_PATHS, USER_PATH])
def path_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with tiny params.yaml as the working directory (where study files resolve
    ``base: params.yaml``), with no shared storage from the environment."""
    from tests.helpers import tiny_params, write_yaml

    write_yaml(tmp_path / "params.yaml", tiny_params())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FMEXP_STORAGE", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one tiny run of the whole pipeline, shared by every test that reads a run's outputs (and
    changes nothing in it): a DVC repo of the shipped params shrunk to seconds (checkerboard and
    digits, fm_ot and fm_vp, and on digits class-conditional FM-OT, seeds 0 and 1) after ``dvc repro``."""
    from tests.helpers import BIN, dvc_repo, sh, tiny_params

    # one process a stage: at this size a worker pool's start costs more than the two seeds it would share
    params = tiny_params(seeds=[0, 1], datasets=["checkerboard", "digits"], workers=1)
    params["train"]["curve_tol"] = 1e-3
    params["per_dataset"]["digits"] = [
        "model.channels=8",
        "train.batch_size=32",
        "sample.n_samples=64",
        "sample.nfe_ladder=[4,8]",
        "score.n_points=32",
        "train.curve_tol=1e-2",
    ]
    params["pipeline"]["methods_by_dataset"]["digits"] = ["fm_ot", "fm_vp", "fm_ot_cfg"]  # and one conditional cell
    params["methods"]["fm_ot_cfg"]["overrides"] = {
        "digits": [
            "train.label_dropout=0.2",
            "sample.fixed_solvers=[midpoint]",
            "sample.grids=[uniform]",
            "sample.guidance=[0,1,4]",
            "score.few_step=midpoint",
            "score.few_step_nfe=8",
        ]
    }
    root = dvc_repo(tmp_path_factory.mktemp("pipeline"), params)
    sh(str(BIN / "dvc"), "repro", cwd=root)
    return root
