"""A researcher's own code beside ``params.yaml`` (a ``plugins/`` package, say), named by ``_target_``.

``enable`` puts the project's folder on ``sys.path`` and ``PYTHONPATH``, so that the command, its
worker processes, torchrun's ranks and a sweep's workers import the same modules. ``local_files``
follows a module's imports through the project's own files, reading them without running any: what
``dvc.yaml`` lists as the dependencies of the cells that use it. ``loaded_files`` is what a process
has actually imported from the project: a stage checks it against its ``dvc.yaml`` entry, so that a
plugin DVC does not track cannot go stale unseen.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PACKAGE", "enable", "local_files", "loaded_files"]

PACKAGE = Path(__file__).resolve().parents[1]
"""The ``fmexp`` package folder: its files are the stages' code dependencies, not plugins, named
relative to its parent as ``dvc.yaml`` names them."""


def enable(root: str | Path = ".") -> None:
    """Make the modules in ``root`` importable here and in every process started from here."""
    folder = str(Path(root).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *parts])


def _is_local(file: str | None, root: Path) -> bool:
    """A file of the project's own: under ``root``, but not fmexp's package nor an installed environment."""
    if not file or not Path(file).is_absolute():  # torch._classes says "_classes.py"
        return False
    path = Path(file).resolve()
    outside = (PACKAGE, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    return path.is_relative_to(root) and not any(path.is_relative_to(p) for p in outside)


def _origin(module: str, root: Path) -> Path | None:
    """The project file of ``module`` (``root/a/b.py`` or ``root/a/b/__init__.py``), found on disk without
    importing anything; None for a module from elsewhere (fmexp, torch) or a name inside a module."""
    path = root.joinpath(*module.split("."))
    for file in (path / "__init__.py", path.with_suffix(".py")):
        if file.is_file() and _is_local(str(file), root):
            return file.resolve()
    return None


def _imports(file: Path, module: str) -> list[str]:
    """The modules ``file`` (module ``module``) imports anywhere, relative imports resolved."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [base, *(f"{base}.{a.name}" for a in node.names)]
    return [m for m in found if m]


def local_files(modules: Iterable[str], root: str | Path = ".") -> set[str]:
    """The project files that importing ``modules`` runs: each module's, its packages' ``__init__``, and
    those of every project module they import, transitively; paths relative to ``root``."""
    base = Path(root).resolve()
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            file = _origin(name, base)
            if file is None:
                continue
            rel = file.relative_to(base).as_posix()
            if rel not in seen:
                seen.add(rel)
                todo += _imports(file, name)
    return seen


def loaded_files(root: str | Path = ".") -> set[str]:
    """The project files of every module this process has imported; paths relative to ``root``."""
    base = Path(root).resolve()
    files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    return {Path(f).resolve().relative_to(base).as_posix() for f in files if f and _is_local(f, base)}
