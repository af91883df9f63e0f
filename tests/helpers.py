"""Tiny params and study files for the end-to-end tests, and sweep workers as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from fmexp.sweep.storage import make_storage
from fmexp.sweep.trial_queue import counted

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # dvc, beside this interpreter


def sh(*args: str, cwd: Path) -> str:
    """Run a command with this venv's ``bin`` first on PATH; its stdout, or a failed assertion with its output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def dvc_repo(root: Path, params: dict) -> Path:
    """A git + DVC copy of the project in ``root`` (code, the plot templates) with ``params`` and the
    ``dvc.yaml`` that ``fmexp dvc-yaml`` generates from them, committed."""
    import shutil

    for name in ("fmexp", "studies"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    (root / "reports" / "sweeps").mkdir(parents=True)
    shutil.copy(ROOT / "reports" / "sweeps" / "README.md", root / "reports" / "sweeps" / "README.md")
    (root / ".dvc" / "plots").mkdir(parents=True)
    shutil.copy(ROOT / ".dvc" / "config", root / ".dvc" / "config")
    for template in (ROOT / ".dvc" / "plots").glob("by_*.json"):
        shutil.copy(template, root / ".dvc" / "plots" / template.name)
    write_yaml(root / "params.yaml", params)
    sh(sys.executable, "-m", "fmexp", "dvc-yaml", cwd=root)  # the pipeline of these params
    sh("git", "init", "-q", cwd=root)
    for key, value in (("user.name", "t"), ("user.email", "t@t")):  # dvc exp run commits too, on any machine
        sh("git", "config", key, value, cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tiny", cwd=root)
    return root


def killed_mid_training(root: Path, params: dict, timeout: float = 180) -> tuple[Path, int]:
    """A DVC repo of ``params`` (checkerboard, fm_ot, seed 0) whose ``dvc repro`` of the train stage was
    killed with SIGKILL, dvc and every process it started, once the first checkpoint appeared; the repo
    and the step of that checkpoint."""
    import signal
    import time

    import torch

    repo = dvc_repo(root, params)
    sh(str(BIN / "dvc"), "repro", "prepare-checkerboard", cwd=repo)
    checkpoints = repo / "runs" / "checkerboard" / "fm_ot" / "checkpoints"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "train-checkerboard-fm_ot"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not list(checkpoints.glob("0-*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage's processes, mid-training
    proc.wait()
    assert not (repo / "runs" / "checkerboard" / "fm_ot" / "train" / "0" / "model.pt").exists(), (
        "the run finished before the kill"
    )
    (checkpoint,) = checkpoints.glob("0-*.pt")
    killed_at = int(torch.load(checkpoint, weights_only=True)["step"])
    assert 0 < killed_at < params["train"]["steps"]
    return repo, killed_at


def train_uninterrupted(repo: Path) -> Path:
    """The killed cell (checkerboard, fm_ot) trained again by ``fmexp train``, without a kill, into
    ``repo/uninterrupted/``; its folder there."""
    sh(
        sys.executable,
        "-m",
        "fmexp",
        "train",
        "--dataset",
        "checkerboard",
        "--method",
        "fm_ot",
        "--runs-dir",
        "uninterrupted",
        cwd=repo,
    )
    return repo / "uninterrupted" / "checkerboard" / "fm_ot"


def assert_same_weights(a: Path, b: Path) -> None:
    """Two training checkpoints hold the same weights and EMA weights bit for bit, at the same step, with
    the same curve rows."""
    import torch

    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    for key in ("model_state", "ema_weights"):
        assert sa[key].keys() == sb[key].keys()
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), (key, name)
    assert sa["rows"] == sb["rows"] and sa["step"] == sb["step"]


def tiny_params(**pipeline: object) -> dict:
    """The shipped params.yaml shrunk to seconds per run."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["pipeline"].update({"datasets": ["checkerboard"], "methods": ["fm_ot", "fm_vp"], "seeds": [0], **pipeline})
    p["data"].update(n_train=1000, n_test=200)
    p["model"].update(width=16, depth=2, time_embed_dim=8)
    p["train"].update(steps=20, eval_every=10, batch_size=64, warmup_steps=5, curve_points=32, val_batch=128)
    p["sample"].update(
        n_samples=100, nfe_ladder=[4, 8], fixed_solvers=["euler", "rk4"], rtol=1e-3, atol=1e-3, n_trajectories=4
    )
    p["score"].update(n_points=64, density_grid=12)
    p["sweep"]["studies"] = []
    p["reflow"]["cells"] = []  # no reflow rounds (tests/pipeline/test_reflow.py asks for them)
    p["sweep"]["tuning"] = []
    by_dataset = p["pipeline"]["methods_by_dataset"]
    p["pipeline"]["methods_by_dataset"] = {d: by_dataset[d] for d in p["pairs"] if d in by_dataset}  # a pair's own
    p["per_dataset"] = {name: [] for name in p["per_dataset"]}  # the tiny sections above, for every dataset
    for method in p["methods"].values():
        method.pop("overrides", None)  # and for every method
    return p


def tiny_study(name: str = "tiny", **fields) -> dict:
    study = {
        "study": name,
        "base": "params.yaml",
        "dataset": "checkerboard",
        "method": "fm_ot",
        "overrides": ["train.steps=10", "train.eval_every=5"],
        "search_space": {"method.path": "choice(ot, vp)", "method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
        "objectives": [{"metric": "nll", "direction": "minimize"}, {"metric": "nfe", "direction": "minimize"}],
        "sampler": {"name": "nsga2", "seed": 0, "options": {"population_size": 2}},  # NSGA-II acts from trial 2
        "pruner": {"name": "none"},
        "n_trials": 3,
        "seeds": [0],
        "storage": None,
    }
    study.update(fields)
    return study


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


FAST_HEARTBEAT = {"interval": 1, "grace_period": 3}  # for tests that kill a worker and wait for its trial to go stale
SHARING_HEARTBEAT = {
    "interval": 1,
    "grace_period": 30,
}  # no worker dies: a beat late on a loaded machine must not count as lost


def sweep(args: list[str], cwd: Path, threads: int = 1) -> subprocess.Popen:
    """``python -m fmexp.sweep ARGS`` as a process of its own, with ``threads`` OpenMP threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("FMEXP_STORAGE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "fmexp.sweep", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def study_trials(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=make_storage(url)).get_trials(deepcopy=False)


def journal(reports: Path, name: str) -> str:
    """The default storage of a study run with ``--reports-dir reports``."""
    return f"journal:///{(reports / 'sweeps' / name / 'study.journal').as_posix()}"


def check_exact(trials: list[optuna.trial.FrozenTrial], n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly n_trials counted trials, all finished, none RUNNING or WAITING, no params twice."""
    slots = counted(trials)
    assert len(slots) == n_trials
    assert all(t.state == TrialState.COMPLETE for t in slots), [(t.number, t.state) for t in slots]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = [tuple(sorted(t.params.items())) for t in slots]
    assert len(set(params)) == n_trials, params
    return slots


def workers_share(workdir: Path, url: str, fields: dict, n_workers: int = 3) -> list[optuna.trial.FrozenTrial]:
    """Study ``p`` run by ``n_workers`` processes started together on one storage; its trials.

    No worker dies here, so the grace period is long: with 3 s, one CI run on a loaded machine saw a
    trial's beats reach SQLite late, another worker fail it and its retry run, one trial too many.
    (Two workers taking one slot, on SQLite before ``make_storage`` began its transactions with ``BEGIN
    IMMEDIATE``, ends the same way.)"""
    # trials of a few seconds, longer than a process start, so that the workers overlap
    study = write_yaml(
        workdir / "p.yaml",
        tiny_study("p", heartbeat=SHARING_HEARTBEAT, overrides=["train.steps=300", "train.eval_every=150"], **fields),
    )
    workers = [sweep([str(study), "--storage", url, "--reports-dir", f"w{i}"], workdir) for i in range(n_workers)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, f"{out}\n{err}"
    trials = study_trials("p", url)
    by = [(t.number, t.state.name, t.user_attrs.get("worker")) for t in trials]
    assert len({t.user_attrs.get("worker") for t in trials}) >= 2, by  # they did share the work
    return trials


GRID = {
    "sampler": {"name": "grid", "seed": 0},
    "n_trials": 6,
    "search_space": {"method.path": "choice(ot, vp)", "method.sigma_min": "choice(1e-4, 1e-2, 1e-1)"},
}
RANDOM = {
    "sampler": {"name": "random", "seed": 0},
    "n_trials": 5,
    "search_space": {"method.sigma_min": "tag(log, interval(1e-5, 1e-1))"},
}
