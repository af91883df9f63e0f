"""The stage layer: each DVC stage depends on the code its module imports, and on no other stage's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

STAGE_MODULES = {
    "prepare": ["fmexp.pipeline.stages.prepare"],
    "train": ["fmexp.pipeline.stages.train", "fmexp.pipeline.stages.aggregate"],
    "sample": ["fmexp.pipeline.stages.sample", "fmexp.pipeline.stages.aggregate"],
    "score": ["fmexp.pipeline.stages.score", "fmexp.pipeline.stages.aggregate"],
    "sweep": [
        "fmexp.sweep",
        "fmexp.pipeline.stages.train",
        "fmexp.pipeline.stages.sample",
        "fmexp.pipeline.stages.score",
    ],
    "report": ["fmexp.report.page"],
}


def _module_file(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported_files(modules: list[str]) -> set[str]:
    """The fmexp source files that ``modules`` import, at module level or inside a function (a lazy
    import runs when the stage does), followed through every file, from the source text. The one
    exception: ``fmexp/config.py`` imports the registries inside ``_names()`` to list the allowed
    names when it validates a config; that reads names, it computes nothing."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
            file = _module_file(".".join(parts[:i]))
            rel = str(file.relative_to(ROOT))
            if rel in seen:
                continue
            seen.add(rel)
            if rel == "fmexp/config.py":
                tree = ast.parse(file.read_text())
                nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            else:
                nodes = [
                    n for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))
                ]
            for node in nodes:
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmexp"):
                    todo.append(node.module)
                    todo += [
                        f"{node.module}.{a.name}"
                        for a in node.names
                        if _module_file(f"{node.module}.{a.name}").exists()
                    ]
                elif isinstance(node, ast.Import):
                    todo += [a.name for a in node.names if a.name.startswith("fmexp")]
    return seen


def _code_deps(stage: str) -> set[str]:
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return {d for d in deps if d.startswith("fmexp/")}


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_each_stage_depends_on_the_code_it_imports(stage: str) -> None:
    missing = _imported_files(STAGE_MODULES[stage]) - _code_deps(stage)
    assert not missing, f"dvc.yaml: stage {stage} imports {sorted(missing)} without declaring them"


def test_no_stage_depends_on_a_later_stage() -> None:
    """Scoring code (its module, the metrics and the FID features) is no dependency of train, the
    score module none of sample, and the training stage's module none of sample or score."""
    assert not {
        "fmexp/stages/score.py",
        "fmexp/stages/sample.py",
        "fmexp/metrics.py",
        "fmexp/features.py",
    } & _code_deps("train")
    assert "fmexp/stages/score.py" not in _code_deps("sample")
    assert "fmexp/stages/train.py" not in _code_deps("sample") | _code_deps("score")
