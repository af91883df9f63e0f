"""The one module that knows file formats: checkpoints, tensors, JSON, CSV and text, all written atomically.

Every writer goes through ``atomic_path``: it writes a temporary file beside the target and renames
it into place, so a crash or an error never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fmexp.errors import ArtifactError, ConfigError

__all__ = [
    "atomic_path",
    "save_torch",
    "load_torch",
    "write_json",
    "read_json",
    "write_text",
    "write_csv",
    "ensure_writable",
]


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
    """Save tensors, dicts, lists and plain values so that ``load_torch`` can read them with ``weights_only``.

    The same payload gives the same bytes: torch names the archive inside the file after the file it is
    given by name (here a random temporary one), but ``archive`` when given an open file, so DVC sees a
    rerun that computed the same tensors as unchanged."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a file written by ``save_torch`` with ``torch.load(weights_only=True)``: no code is executed.
    A file that torch cannot read raises ``ArtifactError`` naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, not a torch file, a pickle refused by weights_only
        raise ArtifactError(
            f"{path}: cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}):"
            " it is truncated or corrupt; rerun the stage that writes it"
        ) from None


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON, keys sorted. A NaN or infinity raises ``ValueError``: JSON has no such
    numbers, so a value that does not exist is written as null, with its reason beside it."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(
            f"{path}: not valid JSON ({e}): it is truncated or corrupt; rerun the stage that writes it"
        ) from None


def ensure_writable(folder: str | os.PathLike[str], *, create: bool = True) -> None:
    """Before any work whose outputs go to ``folder``: create it (with ``create``) and a file in it. Without
    ``create``, nothing is left behind: a folder that does not exist yet is probed in its nearest
    existing ancestor, which must be a folder. A folder that cannot be written raises ``ConfigError``
    naming it."""
    try:
        target = Path(folder)
        if create:
            target.mkdir(parents=True, exist_ok=True)
        else:
            while not target.exists():
                target = target.parent
            if not target.is_dir():
                raise NotADirectoryError(f"{target} is a file, not a folder")
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as e:
        raise ConfigError(
            f"{folder}: cannot write outputs here ({e.strerror or e}); choose another folder"
            " (--data-dir, --runs-dir, --reports-dir) or fix its permissions"
        ) from None


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
