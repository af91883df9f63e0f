"""The one module that knows file formats: checkpoints, tensors, JSON, CSV and text, all written atomically.

Every writer goes through ``atomic_path``: it writes a temporary file beside the target and renames
it into place, so a crash or an error never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["atomic_path", "save_torch", "load_torch", "write_json", "read_json", "write_text", "write_csv"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the final file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_torch(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Save tensors, dicts, lists and plain values so that ``load_torch`` can read them with ``weights_only``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by ``save_torch`` with ``torch.load(weights_only=True)``: no code is executed."""
    return torch.load(path, map_location=map_location, weights_only=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
