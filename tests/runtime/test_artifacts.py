"""Every file fmexp writes appears whole or not at all, and the same content is the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fmexp.runtime import artifacts


def test_checkpoint_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "c.pt"
    artifacts.save_torch(target, {"a": torch.ones(2)})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert torch.equal(artifacts.load_torch(target)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_saving_the_same_payload_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    """DVC hashes outputs by their bytes: a rerun that computes the same tensors must write the same file,
    or every stage downstream of it reruns. Each save goes through its own random temporary file."""
    payload = {"w": torch.arange(6.0).reshape(2, 3), "rows": [{"step": 1, "loss": 0.5}], "n": 3}
    artifacts.save_torch(tmp_path / "a.pt", payload)
    artifacts.save_torch(tmp_path / "b.pt", payload)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_json_has_no_nan_a_missing_value_is_null_with_its_reason(tmp_path: Path) -> None:
    """JSON has no NaN (``json.loads`` of other tools rejects it): writing one is refused, and nothing is
    left behind; a value that does not exist is written as null."""
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        artifacts.write_json(tmp_path / "m.json", {"fid_draw_std": float("nan")})
    assert list(tmp_path.iterdir()) == []
    artifacts.write_json(tmp_path / "m.json", {"fid_draw_std": None, "fid_draw_std_reason": "1 draws"})
    assert json.loads((tmp_path / "m.json").read_text())["fid_draw_std"] is None
