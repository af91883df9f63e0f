"""The files a pipeline command runs: fmexp's modules, followed through the import graph from the
command's entry in ``fmexp.cli``, and the project's own (plugin) files that a cell's components import.
They are each stage's code dependencies in ``dvc.yaml`` (``fmexp.pipeline.dvc_yaml``), so that a change
to scoring never makes training stale; ``check_plugin_deps`` checks at run time that none is missing."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fmexp.config.schema import Params
from fmexp.config.validate import component_targets
from fmexp.errors import ConfigError
from fmexp.runtime.plugins import PACKAGE, loaded_files, local_files

__all__ = ["PACKAGE", "Commands", "imported_files", "command_modules", "plugin_files", "check_plugin_deps"]

DYNAMIC = {stage: [f"fmexp.pipeline.stages.{stage}"] for stage in ("reflow", "train", "sample", "score")}
"""The one import that the AST cannot see: ``stages.aggregate`` loads each stage's module by name."""

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: 10x faster


def _module_file(module: str) -> Path:
    path = PACKAGE.parent / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(file: Path, functions: set[str] | None = None) -> list[str]:
    """The fmexp modules that ``file`` imports anywhere (module level and inside functions), or, with
    ``functions``, at module level and inside those functions only."""
    return list(_parsed_imports(file.read_text(), None if functions is None else frozenset(functions)))


@functools.lru_cache(maxsize=1024)
def _parsed_imports(source: str, functions: frozenset[str] | None) -> tuple[str, ...]:
    """``_imports`` of a file's text: parsed once per text, as the seven commands share most files (every
    stage that ``dvc repro`` runs regenerates ``dvc.yaml`` to check it)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    if functions is None:
        nodes: Iterable[ast.AST] = ast.walk(tree)
    else:
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        inner = [n for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in functions for n in ast.walk(f)]
        nodes = [*top, *inner]
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fmexp":
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}").exists()]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "fmexp"]
    return tuple(found)


def imported_files(modules: Iterable[str]) -> set[str]:
    """The source files of ``modules`` and of every fmexp module they import, transitively, with the
    ``__init__`` of every package on the way (Python runs it first); paths relative to the repository."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            file = _module_file(".".join(parts[:i]))
            rel = file.relative_to(PACKAGE.parent).as_posix()
            if rel not in seen:
                seen.add(rel)
                todo += _imports(file)
    return seen


Commands = Mapping[str, tuple[str, Callable[..., Any], Callable[..., Any]]]
"""``fmexp.cli.COMMANDS``: each command's help, its parser's builder and its handler."""


def command_modules(commands: Commands, command: str) -> set[str]:
    """The files that ``python -m fmexp COMMAND`` runs: ``fmexp/__main__.py``, ``fmexp/cli.py`` with
    the imports of its module level and of the command's own functions (``commands``), and all they
    import."""
    _, build, handler = commands[command]
    functions = {build.__name__, handler.__qualname__.split(".")[0]}
    cli = _imports(_module_file("fmexp.cli"), functions)
    return imported_files([*cli, *DYNAMIC.get(command, [])]) | {
        "fmexp/__init__.py",
        "fmexp/__main__.py",
        "fmexp/cli.py",
    }


def plugin_files(params: Params, dataset: str, method: str) -> list[str]:
    """The project's own files (``fmexp.runtime.plugins``) that the components of cell (dataset, method)
    import: its stages' dependencies, so that a change to a plugin reruns exactly the cells that use it."""
    from fmexp.config.load import run_for

    run = run_for(params, dataset, method, params.pipeline.seeds[0])
    return sorted(local_files(component_targets(run).values()))


def check_plugin_deps(stage: str, params: Params, dvc_file: str | Path = "dvc.yaml") -> None:
    """``ConfigError`` if this process has imported a project file (a plugin) that ``dvc.yaml`` does not
    list among ``stage``'s dependencies, nor among any cell's (loading params.yaml builds every method's
    path): an import the generator cannot follow (``importlib``), which DVC would not rerun the stage
    for. Nothing to check without a ``dvc.yaml`` holding the stage (a command run by hand)."""
    path = Path(dvc_file)
    loaded = (yaml.load(path.read_text(), Loader=_Loader) or {}) if path.exists() else {}
    entry = loaded.get("stages", {}).get(stage)
    if entry is None:
        return
    missing = loaded_files(path.parent) - set(entry.get("deps", []))
    if missing:  # the cells' plugins only where needed: each cell's costs a run_for
        missing -= {f for d, m in params.cell_list() for f in plugin_files(params, d, m)}
    if missing:
        raise ConfigError(
            f"{path}: stage {stage} imports {min(missing)}, which is not among its deps: DVC would not rerun it when"
            " that file changes. Regenerate dvc.yaml with `python -m fmexp dvc-yaml`"
        )
