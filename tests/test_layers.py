"""The architecture: the generated dvc.yaml is the committed one, each stage depends on exactly the code
its command imports, and the import layers hold (import-linter runs the same contract in `make lint`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

KINDS = ("prepare", "train", "sample", "score", "sweep", "report")
"""The stage kinds of dvc.yaml; each stage ``<kind>-...`` runs ``python -m fmexp <kind>``."""


def _module_file(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports_in(node: ast.AST, module: str) -> list[str]:
    """The fmexp modules an AST imports (``from fmexp.x import y`` names ``fmexp.x.y`` where that is a module)."""
    found = []
    for n in ast.walk(node):
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING":
            n.body = []  # never runs
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("fmexp"):
            found.append(n.module)
            found += [f"{n.module}.{a.name}" for a in n.names if _module_file(f"{n.module}.{a.name}").exists()]
        elif isinstance(n, ast.Import):
            found += [a.name for a in n.names if a.name.startswith("fmexp")]
    return found


def _closure(modules: list[str]) -> set[str]:
    """Every fmexp file that importing ``modules`` runs: each module, the packages above it, and what they
    import anywhere (a lazy import runs when the stage does), followed through every file."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            file = _module_file(".".join(parts[:i]))
            rel = str(file.relative_to(ROOT))
            if rel not in seen:
                seen.add(rel)
                todo += _imports_in(ast.parse(file.read_text()), rel)
    return seen


def _command_files(command: str) -> set[str]:
    """What ``python -m fmexp COMMAND`` runs: ``fmexp/__main__.py`` and ``fmexp/cli.py``, whose
    module-level imports and the imports of this command's two functions (its parser and its handler,
    as named in ``COMMANDS``) are followed."""
    tree = ast.parse((ROOT / "fmexp" / "cli.py").read_text())
    table = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "COMMANDS")
    entry = next(v for k, v in zip(table.value.keys, table.value.values, strict=True) if k.value == command)  # type: ignore[union-attr]
    build, handler = entry.elts[1], entry.elts[2]  # type: ignore[attr-defined]
    names = {build.id, handler.func.id if isinstance(handler, ast.Call) else handler.id}
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = [m for n in top for m in _imports_in(n, "fmexp/cli.py")]
    functions = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in names]
    modules += [m for f in functions for m in _imports_in(f, "fmexp/cli.py")]
    files = _closure(modules) | {"fmexp/__init__.py", "fmexp/__main__.py", "fmexp/cli.py"}
    if "fmexp/pipeline/stages/aggregate.py" in files:  # it imports the stage's own module by name (importlib)
        files |= _closure([f"fmexp.pipeline.stages.{command}"])
    return files


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_the_committed_dvc_yaml_is_the_generated_one() -> None:
    command = [sys.executable, "-m", "fmexp", "dvc-yaml", "--check"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_each_stage_depends_on_exactly_the_code_its_command_imports(kind: str) -> None:
    stages = {name: s for name, s in _stages().items() if name.split("-")[0] == kind}
    assert stages, f"dvc.yaml has no {kind} stage"
    expected = _command_files(kind)
    for name, stage in stages.items():
        declared = {d for d in stage["deps"] if d.startswith("fmexp/") and d.endswith(".py")}
        assert declared == expected, (
            f"{name}: declared but not imported {sorted(declared - expected)};"
            f" imported but not declared {sorted(expected - declared)}"
        )


def test_no_stage_depends_on_a_later_stage() -> None:
    """Scoring code (its module, the metrics and the FID features) is no dependency of train, the score
    module none of sample, and the training stage's module none of sample or score."""
    deps = {kind: set(_stages()[f"{kind}-checkerboard-fm_ot"]["deps"]) for kind in ("train", "sample", "score")}
    later = {"fmexp/pipeline/stages/score.py", "fmexp/pipeline/stages/sample.py", "fmexp/data/features.py"}
    assert not later & deps["train"]
    assert "fmexp/pipeline/stages/score.py" not in deps["sample"]
    assert "fmexp/pipeline/stages/sample.py" not in deps["score"]  # each stage's module is its own stage's dep only
    assert "fmexp/pipeline/stages/train.py" not in deps["sample"] | deps["score"]
    assert "fmexp/training/loop.py" not in deps["sample"] | deps["score"]


def test_a_key_that_per_dataset_sets_is_no_dependency_of_its_cells() -> None:
    """params.yaml's digits entry sets train.lr=4e-3: `dvc exp run -S train.lr=1e-3` must not rerun digits."""
    stages = _stages()
    digits, board = stages["train-digits-fm_ot"]["params"], stages["train-checkerboard-fm_ot"]["params"]
    assert "train.lr" not in digits and "train" not in digits and "per_dataset.digits" in digits
    assert "train" in board  # checkerboard overrides nothing of train: the whole section
    assert "model.width" in board and "model.channels" not in board  # the MLP's arguments, not the U-Net's
    assert "model.channels" not in digits  # per_dataset.digits sets it


def test_importing_fmexp_loads_no_torch() -> None:
    code = "import sys, fmexp; fmexp.__version__; import fmexp.cli; assert 'torch' not in sys.modules, 'torch'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_validating_a_name_imports_nothing() -> None:
    code = (
        "import sys; from fmexp.registry import check_name, names; check_name('path', 'ot');"
        " before = set(sys.modules); names('model'); check_name(('toy_dataset', 'image_dataset'), 'digits');"
        " assert not {m for m in set(sys.modules) - before if m.startswith('fmexp')}"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_key_that_a_methods_overrides_set_is_no_dependency_of_that_cell(tmp_path: Path) -> None:
    """fm_vp's own lr for checkerboard: `-S train.lr=...` must not rerun fm_vp there (its entry decides),
    but still reruns fm_ot; and a tuning study named without results is refused before anything is written."""
    from fmexp.cli import COMMANDS
    from fmexp.config.load import load_params
    from fmexp.errors import ConfigError
    from fmexp.pipeline.dvc_yaml import stages
    from tests.helpers import tiny_params, write_yaml

    p = tiny_params()
    p["methods"]["fm_vp"]["overrides"] = {"checkerboard": ["train.lr=2e-3"]}
    params = load_params(write_yaml(tmp_path / "params.yaml", p))
    out = stages(params, COMMANDS)
    vp, ot = out["train-checkerboard-fm_vp"]["params"], out["train-checkerboard-fm_ot"]["params"]
    assert "train.lr" not in vp and "train" not in vp and "train.steps" in vp and "methods.fm_vp" in vp
    assert "train" in ot
    params.sweep.tuning = ["tune_nothing"]
    with pytest.raises(ConfigError, match=r"sweep\.tuning: reports/sweeps/tune_nothing/trials\.csv does not exist"):
        stages(params, COMMANDS)
