"""Components by ``_target_``: a user's path, coupling, time sampler, model and dataset, what fmexp passes
them, and a clear exit-2 error, naming the key, the target and the reason, for each bad one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmexp.config.load import load_params, run_for
from fmexp.config.plan import build_method, model_spec
from fmexp.data.datasets import load_dataset
from fmexp.errors import ConfigError
from fmexp.networks.models import build_model
from fmexp.registry import build, target
from fmexp.runtime.plugins import local_files
from fmexp.training.state import CHECKPOINT_KEYS, load_model
from tests.helpers import ROOT, tiny_params, write_yaml

USER = {
    "methods": {"fm_decay": {"objective": "fm", "path": {"_target_": "plugins.paths.PowerDecayPath", "p": 3}}},
    "model": {"name": {"_target_": "plugins.models.ResidualMLP", "width": 16, "blocks": 1}},
    "datasets": {"ring": {"_target_": "plugins.data.ring", "radius": 3.0}},
}


def _params(tmp_path: Path, **sections: object) -> Path:
    p = tiny_params()
    for key, value in sections.items():
        if key == "methods":
            p["methods"].update(value)
        else:
            p[key] = value if not isinstance(value, dict) or key not in p else {**p[key], **value}
    return write_yaml(tmp_path / "params.yaml", p)


def test_a_registered_name_is_its_target() -> None:
    assert target("path", "ot") == ("fmexp.flow.paths.CondOTPath", {})
    assert target("path", {"_target_": "vp", "beta_max": 10}) == ("fmexp.flow.paths.VPPath", {"beta_max": 10})
    path = build("path", {"_target_": "vp", "beta_min": 0.2, "beta_max": 10}, "k", sigma_min=1e-3)
    assert (path.beta_min, path.beta_max, path.sigma_min) == (0.2, 10.0, 1e-3)


def test_user_components_get_what_fmexp_derives(tmp_path: Path) -> None:
    """The path gets the method's sigma_min; the model the data's dim; the dataset its own arguments; the
    splits come from two streams of data.seed, like the built-ins'."""
    params = load_params(_params(tmp_path, **USER, pipeline={"datasets": ["ring"], "methods": ["fm_decay"]}))
    run = run_for(params, "ring", "fm_decay", 0)
    data = load_dataset("ring", 500, 200, 0, run.dataset_spec)
    radius = data.train.norm(dim=1)
    assert data.train.shape == (500, 2) and abs(float(radius.mean()) - 3.0) < 0.05  # width 0.1: se 0.0045
    assert not torch.equal(data.train[:200], data.test)  # independent streams
    method = build_method(run, data)
    assert type(method.path).__name__ == "PowerDecayPath" and method.path.p == 3.0
    assert method.path.sigma_min == run.method.sigma_min
    spec = model_spec(run.model, data)
    assert spec == {"_target_": "plugins.models.ResidualMLP", "dim": 2, "width": 16, "blocks": 1}
    assert build_model(spec)(data.train[:4], torch.rand(4)).shape == (4, 2)


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        (
            {"methods": {"fm_x": {"objective": "fm", "path": {"_target_": "plugins.path.PowerDecayPath"}}}},
            r"methods\.fm_x\.path: _target_ 'plugins\.path\.PowerDecayPath' does not import: ModuleNotFoundError",
        ),
        (
            {"methods": {"fm_x": {"objective": "fm", "path": {"_target_": "torch.nn.Linear"}}}},
            r"methods\.fm_x\.path: _target_ 'torch\.nn\.Linear' is not a path",
        ),
        (
            {"methods": {"fm_x": {"objective": "fm", "path": {"_target_": "plugins.paths.PowerDecayPath", "q": 2}}}},
            r"methods\.fm_x\.path: plugins\.paths\.PowerDecayPath takes no argument 'q'; it takes \['sigma_min', 'p'\]",
        ),
        (
            {"methods": {"fm_x": {"objective": "fm", "path": {"_target_": "plugins.paths.PowerDecayPath", "p": 0.5}}}},
            r"methods\.fm_x\.path: plugins\.paths\.PowerDecayPath\(sigma_min=0\.0001, p=0\.5\) failed: ValueError",
        ),
        (
            {"methods": {"sm_x": {"objective": "sm", "path": {"_target_": "plugins.paths.PowerDecayPath"}}}},
            r"methods\.sm_x: objective 'sm' needs a path with mu_0 = a_0 x_1, a_0 > 0 \(vp, ve\); PowerDecayPath",
        ),
        ({"model": {"name": {"_target_": "plugins.data.ring"}}}, None),  # a function: checked when built
        ({"model": {"name": {"_target_": "torch.optim.Adam"}}}, r"model\.name: _target_ 'torch\.optim\.Adam' is not"),
        ({"train": {"time_sampler": {"_target_": "nowhere.beta"}}}, r"train\.time_sampler: _target_ 'nowhere\.beta'"),
        ({"methods": {"fm_x": {"objective": "fm", "coupling": {"path": "x"}}}}, r"methods\.fm_x\.coupling: a coupling"),
        ({"datasets": {"checkerboard": {"_target_": "plugins.data.ring"}}}, r"datasets\.checkerboard: .* fmexp's own"),
        ({"datasets": {"ring": "plugins.data"}}, None),  # a dotted string is a target too
    ],
)
def test_a_bad_target_names_the_key_the_target_and_the_reason(
    tmp_path: Path, section: dict, reason: str | None
) -> None:
    path = _params(tmp_path, **section)
    if reason is None:
        load_params(path)
        return
    with pytest.raises(ConfigError, match=reason):
        load_params(path)


def test_the_command_exits_2_before_any_work(tmp_path: Path) -> None:
    path = _params(tmp_path, methods={"fm_x": {"objective": "fm", "path": {"_target_": "plugins.paths.Nope"}}})
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp", "prepare"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "methods.fm_x.path: _target_ 'plugins.paths.Nope' does not import" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing written


def test_a_dataset_generator_must_give_finite_rows() -> None:
    with pytest.raises(ConfigError, match=r"datasets\.flat: the generator must return a finite \(n, d\) array"):
        load_dataset("flat", 10, 10, 0, {"_target_": "plugins.data.ring", "radius": float("nan")})


def test_a_checkpoint_whose_target_no_longer_imports_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gone.py").write_text("from plugins.models import ResidualMLP as Net\n")
    sys.path.insert(0, str(tmp_path))
    try:
        model = build_model({"_target_": "gone.Net", "dim": 2, "width": 8, "blocks": 1})
        spec = {"_target_": "gone.Net", "dim": 2, "width": 8, "blocks": 1}
        state = {"step": 1, "initial_loss": 1.0, "model_spec": spec, "ema_weights": model.state_dict()}
        torch.save(dict.fromkeys(CHECKPOINT_KEYS) | state, tmp_path / "model.pt")
        assert load_model(tmp_path / "model.pt") is not None
        (tmp_path / "gone.py").unlink()
        sys.modules.pop("gone", None)
        with pytest.raises(ConfigError, match=r"model\.pt: model_spec: _target_ 'gone\.Net' does not import"):
            load_model(tmp_path / "model.pt")
    finally:
        sys.path.remove(str(tmp_path))


def test_local_files_follow_the_projects_imports_without_running_them(tmp_path: Path) -> None:
    pkg = tmp_path / "mine"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "paths.py").write_text("from .util import k\nimport numpy\nraise SystemExit('never run')\n")
    (pkg / "util.py").write_text("from mine import consts\nk = 1\n")
    (pkg / "consts.py").write_text("")
    (pkg / "unused.py").write_text("")
    files = local_files(["mine.paths.Thing"], tmp_path)
    assert files == {"mine/__init__.py", "mine/paths.py", "mine/util.py", "mine/consts.py"}
    assert local_files(["fmexp.flow.paths.CondOTPath", "torch.nn.Linear"], ROOT) == set()


def test_the_example_path_reduces_to_ot_at_p_1() -> None:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    mine = build("path", {"_target_": "plugins.paths.PowerDecayPath", "p": 1}, "k", sigma_min=0.05)
    for a, b in zip(mine.schedule(t), build("path", "ot", "k", sigma_min=0.05).schedule(t), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-15, atol=1e-15)
