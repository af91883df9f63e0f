"""Shared fixtures: a seeded global RNG, every registered path, and a working folder with tiny params."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fmexp.registry import names

# two threads, one core each; under pytest-xdist (make test-fast: -n 2) one per worker, so workers never contend
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global RNG state, so no test depends on the order it runs in."""
    torch.manual_seed(0)


@pytest.fixture(params=names("path"))
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
