"""Study files: the grammar becomes Optuna distributions; bad files exit 2 and write nothing; runs resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from fmexp.cli import main as fmexp_main
from fmexp.sweep.samplers import make_sampler
from fmexp.sweep.space import to_distribution
from fmexp.sweep.study import load_study, study_warnings
from tests.helpers import BIN, ROOT, dvc_repo, sh, tiny_params, tiny_study, write_yaml


def main(argv: list[str]) -> int:
    """``python -m fmexp.sweep ARGV``, in this process."""
    return fmexp_main(["sweep", *argv], prog="python -m fmexp.sweep")


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("choice(ot, vp)", optuna.distributions.CategoricalDistribution(["ot", "vp"])),
        ("interval(1e-5, 1e-1)", optuna.distributions.FloatDistribution(1e-5, 1e-1)),
        ("tag(log, interval(1e-5, 1e-1))", optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)),
        ("range(100, 500, 100)", optuna.distributions.IntDistribution(100, 400, step=100)),
        ("tag(log, range(1, 9))", optuna.distributions.IntDistribution(1, 8, log=True)),
        ("range(0.1, 0.5, 0.1)", optuna.distributions.FloatDistribution(0.1, 0.4, step=0.1)),
    ],
)
def test_grammar_to_distribution(expr: str, expected) -> None:
    got = to_distribution("k", expr, "s.yaml")
    assert type(got) is type(expected)
    if isinstance(expected, optuna.distributions.FloatDistribution):
        assert got.low == pytest.approx(expected.low) and got.high == pytest.approx(expected.high)
        assert (got.log, got.step is None) == (expected.log, expected.step is None)
    else:
        assert got == expected


BAD = [
    ("yaml", None, "invalid YAML"),
    ("unknown key", {"n_trial": 3}, "n_trial"),
    ("unknown path", {"search_space": {"method.path": "choice(ot, otp)"}}, r"search_space\.method\.path.*'otp'"),
    (
        "unknown method",
        {"method": "fm_xx"},
        r"method: 'fm_xx' is not one of \[.*\]; did you mean 'fm_vp'\? \(the methods of params\.yaml\)",
    ),
    ("unknown sampler", {"sampler": {"name": "bayes", "seed": 0}}, r"sampler\.name: 'bayes'"),
    ("unknown pruner", {"pruner": {"name": "asha"}, "objectives": [{"metric": "nll"}]}, r"pruner\.name: 'asha'"),
    ("unknown metric", {"objectives": [{"metric": "fid", "direction": "minimize"}]}, r"objectives\[0\]\.metric: 'fid'"),
    ("unknown direction", {"objectives": [{"metric": "nll", "direction": "down"}]}, r"objectives\[0\]\.direction"),
    (
        "unknown search key",
        {"search_space": {"method.sigmamin": "interval(0.1, 0.2)"}},
        r"search_space\.method\.sigmamin",
    ),
    ("bad grammar", {"search_space": {"method.sigma_min": "interval(1e-5,"}}, r"search_space\.method\.sigma_min"),
    ("not a sweep", {"search_space": {"method.sigma_min": "0.1"}}, "is not a sweep"),
    ("reversed bounds", {"search_space": {"method.sigma_min": "interval(1e-1, 1e-5)"}}, "reversed"),
    ("log range to zero", {"search_space": {"method.sigma_min": "tag(log, interval(0, 1e-1))"}}, "above 0"),
    (
        "out-of-range bound",
        {"search_space": {"method.sigma_min": "interval(0.5, 2.0)"}},
        r"method\.sigma_min: must lie in \[0, 1\)",
    ),
    ("zero trials", {"n_trials": 0}, r"n_trials: must be at least 1"),
    ("negative trials", {"n_trials": -2}, r"n_trials: must be at least 1"),
    ("pruning multi-objective", {"pruner": {"name": "median"}}, "cannot prune a multi-objective"),
    ("escaping name", {"study": "../../etc"}, r"study: '\.\./\.\./etc' must be a plain name"),
    ("absolute name", {"study": "/tmp/x"}, "must be a plain name"),
    ("bad override", {"overrides": ["train.stepz=3"]}, r"overrides.*train\.stepz"),
    ("grid over interval", {"sampler": {"name": "grid", "seed": 0}}, "grid needs choice"),
    ("bad storage", {"storage": "redis://x"}, r"storage: 'redis://x'"),
    (
        "unknown sampler option",
        {"sampler": {"name": "tpe", "options": {"n_startup_trial": 2}}},
        r"sampler\.options\.n_startup_trial: not an argument of TPESampler; choose from \[.*\];"
        r" did you mean 'n_startup_trials'\?",
    ),
    ("seed as a sampler option", {"sampler": {"name": "tpe", "options": {"seed": 2}}}, r"sampler\.options\.seed"),
    (
        "refused option value",
        {"sampler": {"name": "nsga2", "options": {"population_size": 1}}},
        "NSGAIISampler refuses",
    ),
    ("unknown pruner option", {"pruner": {"name": "none", "options": {"patience": 2}}}, r"pruner\.options\.patience"),
    ("unknown tracker", {"loggers": {"mlfow": {}}}, r"loggers\.mlfow: .*; did you mean 'mlflow'\?"),
    (
        "a metric this data does not score",
        {"objectives": [{"metric": "fid", "direction": "minimize"}]},
        r"objectives\[0\]\.metric: 'fid' is not one of \[.*'nll'.*\] \(what the score stage writes for checkerboard\)",
    ),
    (
        "an unknown searched method",
        {"search_space": {"method": "choice(fm_ot, fm_cos)"}},
        r"search_space\.method: 'fm_cos'",
    ),
    (
        "a searched method by interval",
        {"search_space": {"method": "interval(0, 1)"}},
        r"search_space\.method: .*choice",
    ),
    ("shared without the method", {"shared": ["train.lr"]}, r"shared: \['train\.lr'\] must name searched keys"),
    ("unknown tracker argument", {"loggers": {"mlflow": {"tracking_url": "x"}}}, r"loggers\.mlflow\.tracking_url"),
    (
        "a few-step sampler the ladder does not run",
        {
            "objectives": [{"metric": "few_step", "direction": "minimize"}],
            "search_space": {"score.few_step": "choice(euler, midpoint@edm)"},
        },
        r"objectives: few_step needs its sampler in the ladder: score\.few_step: midpoint@edm at"
        r" score\.few_step_nfe=4 is not a rung",
    ),
]


@pytest.mark.parametrize("case, fields, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_study_exits_2_and_writes_nothing(workdir: Path, capsys, case: str, fields, expected: str) -> None:
    path = workdir / "studies" / "bad.yaml"
    if fields is None:
        path.parent.mkdir()
        path.write_text("study: bad\nsearch_space: {method.path: choice(ot, vp)\n")
    else:
        write_yaml(path, tiny_study("bad", **fields))
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert pd.Series([err]).str.contains(expected, regex=True).item(), err
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


@pytest.mark.e2e
def test_exit_status_from_the_command_line(workdir: Path) -> None:
    path = write_yaml(workdir / "s.yaml", tiny_study(n_trials=0))
    proc = subprocess.run([sys.executable, "-m", "fmexp.sweep", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "n_trials" in proc.stderr
    assert not (workdir / "reports").exists()


def test_sweep_runs_and_resumes_to_the_total(workdir: Path, capsys) -> None:
    path = write_yaml(workdir / "studies" / "tiny.yaml", tiny_study())
    assert main([str(path)]) == 0
    folder = workdir / "reports" / "sweeps" / "tiny"
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 3 and set(trials.state) == {"COMPLETE"}
    # the objectives, every other metric each trial scored, each seed's values; nothing that varies from run to run
    assert list(trials.columns[:5]) == ["number", "state", "params_method.path", "params_method.sigma_min", "nll"]
    assert {"nfe", "distance", "nll_se", "nfe_nll", "seed0_nll", "seed0_distance", "seed0_nfe_nll"} <= set(
        trials.columns
    )
    assert not {"duration", "worker", "seed0_train_seconds"} & set(trials.columns)
    assert (trials.distance == trials.seed0_distance).all()  # one seed: its value is the mean
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["pareto_front"] and all({"nll", "nfe"} == set(t["values"]) for t in best["pareto_front"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and all(" nats, nfe " in line and " NFE" in line for line in lines), out
    assert "study tiny: 3 trials" in out
    assert "browse: optuna-dashboard reports/sweeps/tiny/study.journal\n" in out  # the path it opens, no journal://
    # the same command with a larger total adds exactly the difference
    assert main([str(path), "--n-trials", "4"]) == 0
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials.number) == [0, 1, 2, 3]
    assert main([str(path), "--n-trials", "4"]) == 0  # already complete: no new trial
    assert len(pd.read_csv(folder / "trials.csv")) == 4


def test_single_objective_seeds_and_pruner(workdir: Path) -> None:
    path = write_yaml(
        workdir / "s.yaml",
        tiny_study(
            "single",
            objectives=[{"metric": "nll", "direction": "minimize"}],
            pruner={"name": "median"},
            sampler={"name": "tpe", "seed": 1},
            seeds=[0, 1],
            n_trials=3,
            search_space={"train.lr": "tag(log, interval(1e-4, 1e-2))"},
        ),
    )
    assert main([str(path)]) == 0
    trials = pd.read_csv(workdir / "reports" / "sweeps" / "single" / "trials.csv")
    done = trials[trials.state == "COMPLETE"]
    assert len(trials) == 3 and len(done) >= 1
    row = done.iloc[0]
    assert row["nll"] == pytest.approx((row["seed0_nll"] + row["seed1_nll"]) / 2)
    assert row["distance"] == pytest.approx((row["seed0_distance"] + row["seed1_distance"]) / 2)
    best = yaml.safe_load((workdir / "reports" / "sweeps" / "single" / "best.yaml").read_text())
    assert best["best"]["values"]["nll"] == pytest.approx(done["nll"].min())


def test_a_study_can_search_the_method_with_its_own_overrides(workdir: Path) -> None:
    """fm_vp's own lr for checkerboard reaches its trials, fm_ot's base lr its own; the grid covers both."""
    params = tiny_params()
    params["methods"]["fm_vp"]["overrides"] = {"checkerboard": ["train.lr=2e-3"]}
    write_yaml(workdir / "params.yaml", params)
    study = tiny_study(
        "methods", sampler={"name": "grid", "seed": 0}, n_trials=2, search_space={"method": "choice(fm_ot, fm_vp)"}
    )
    path = write_yaml(workdir / "m.yaml", {**study, "objectives": [{"metric": "nll", "direction": "minimize"}]})
    assert main([str(path)]) == 0
    trials = pd.read_csv(workdir / "reports" / "sweeps" / "methods" / "trials.csv")
    assert sorted(trials.params_method) == ["fm_ot", "fm_vp"] and (trials.state == "COMPLETE").all()
    record = yaml.safe_load((workdir / "reports" / "sweeps" / "methods" / "study.yaml").read_text())
    lrs = {m: r["train"]["lr"] for m, r in record["base_runs"].items()}
    assert lrs == {"fm_ot": params["train"]["lr"], "fm_vp": 2e-3}


def test_grid_sampler_covers_the_grid(workdir: Path) -> None:
    path = write_yaml(
        workdir / "g.yaml",
        tiny_study(
            "grid", sampler={"name": "grid", "seed": 0}, n_trials=2, search_space={"method.path": "choice(ot, vp)"}
        ),
    )
    assert main([str(path)]) == 0
    trials = pd.read_csv(workdir / "reports" / "sweeps" / "grid" / "trials.csv")
    assert sorted(trials["params_method.path"]) == ["ot", "vp"]


@pytest.mark.parametrize("study", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_studies_are_valid(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    s = load_study(study, reports_dir="/nonexistent")
    tuning = study.stem in yaml.safe_load((ROOT / "params.yaml").read_text())["sweep"]["tuning"]
    assert (
        "# Cost:" in study.read_text() or not tuning
    )  # a tuning study runs the pipeline's recipe: it says at what cost
    if "# Cost:" not in study.read_text():  # laptop budget: about 4 minutes of training
        per_trial = max(r.train.steps + sum(q.train.steps for q in s.rounds.get(m, [])) for m, r in s.base_runs.items())
        assert s.config.n_trials * len(s.config.seeds) * per_trial <= 40_000
    assert study.read_text().startswith("#")  # opens with the question it answers
    assert study_warnings(s) == []  # a model-based sampler gets trials after its random start-up ones


def test_sampler_options_reach_optuna_and_a_random_only_study_is_named(workdir: Path, capsys) -> None:
    sampler = make_sampler("tpe", {"n_startup_trials": 3, "multivariate": False})(0)
    assert (sampler._n_startup_trials, sampler._multivariate) == (3, False)  # the file's options
    assert make_sampler("tpe", {})(0)._multivariate is True  # fmexp's default beneath them
    path = write_yaml(workdir / "s.yaml", tiny_study(sampler={"name": "tpe", "seed": 0}, n_trials=1))
    assert main([str(path)]) == 0
    err = capsys.readouterr().err
    assert "n_trials=1 does not exceed tpe's n_startup_trials=10" in err and "random search" in err  # Optuna's 10


def test_resuming_with_a_changed_definition_is_refused(workdir: Path, capsys) -> None:
    path = write_yaml(
        workdir / "s.yaml", tiny_study("drift", n_trials=1, search_space={"method.path": "choice(ot, vp)"})
    )
    assert main([str(path)]) == 0
    write_yaml(
        path,
        tiny_study(
            "drift",
            n_trials=2,
            search_space={"method.path": "choice(ot, vp)"},
            overrides=["train.steps=12", "train.eval_every=6"],
        ),
    )
    assert main([str(path)]) == 2
    assert "different definition (base_run, overrides changed)" in capsys.readouterr().err
    assert len(pd.read_csv(workdir / "reports" / "sweeps" / "drift" / "trials.csv")) == 1


def test_archive_changed_moves_the_old_study_and_starts_afresh(workdir: Path, capsys) -> None:
    path = write_yaml(
        workdir / "drift.yaml", tiny_study("drift", n_trials=1, search_space={"method.path": "choice(ot, vp)"})
    )
    assert main([str(path)]) == 0
    folder = workdir / "reports" / "sweeps" / "drift"
    old_db = (folder / "study.journal").read_bytes()
    write_yaml(
        path,
        tiny_study(
            "drift",
            n_trials=1,
            search_space={"method.path": "choice(ot, vp)"},
            overrides=["train.steps=12", "train.eval_every=6"],
        ),
    )
    assert main([str(path), "--archive-changed"]) == 0
    (archived,) = (folder / "archive").iterdir()
    assert (archived / "study.journal").read_bytes() == old_db and (archived / "trials" / "0000").is_dir()
    assert "moved its storage and trials to" in capsys.readouterr().out
    assert len(pd.read_csv(folder / "trials.csv")) == 1  # the new study's one trial, not two


@pytest.mark.slow
@pytest.mark.e2e
def test_dvc_repro_never_touches_a_study_run_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study run by hand survives `dvc repro` byte for byte; a new study file does not rerun the
    pipeline's studies; a params change reruns the pipeline's study and archives its old database."""

    params = tiny_params()
    params["sweep"]["studies"] = ["piped"]
    monkeypatch.delenv("FMEXP_STORAGE", raising=False)
    dvc_repo(tmp_path, params)
    write_yaml(tmp_path / "studies" / "piped.yaml", tiny_study("piped", n_trials=1))
    write_yaml(tmp_path / "studies" / "mine.yaml", tiny_study("mine", n_trials=2))
    bin_dir = BIN

    def run(*args: str) -> str:
        return sh(*args, cwd=tmp_path)

    run(sys.executable, "-m", "fmexp.sweep", "studies/mine.yaml")
    mine = tmp_path / "reports" / "sweeps" / "mine"
    before = {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    assert Path("study.journal") in before and Path("trials.csv") in before

    run(str(bin_dir / "dvc"), "repro", "sweep-piped")
    piped = tmp_path / "reports" / "sweeps" / "piped"
    assert len(pd.read_csv(piped / "trials.csv")) == 1
    write_yaml(tmp_path / "studies" / "new.yaml", tiny_study("new", n_trials=1))  # a new study file ...
    assert "sweep-piped" not in run(str(bin_dir / "dvc"), "status", "sweep-piped")  # ... reruns nothing

    params["train"]["lr"] = 3e-3  # the pipeline's study is now another study: rerun, old one archived
    write_yaml(tmp_path / "params.yaml", params)
    run(str(bin_dir / "dvc"), "repro", "sweep-piped")
    assert (piped / "study.journal").exists() and len(list((piped / "archive").glob("*/study.journal"))) == 1
    after = {p.relative_to(mine): p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    assert after == before


def test_a_diverging_trial_fails_alone(workdir: Path) -> None:
    """lr=1e3 and lr=10 diverge within the first 20 steps (before the first curve row): their trials fail
    with the reason recorded, the lr=2e-3 trial completes, and the outputs are written."""
    path = write_yaml(
        workdir / "d.yaml",
        tiny_study(
            "d",
            sampler={"name": "grid", "seed": 0},
            n_trials=3,
            objectives=[{"metric": "nll", "direction": "minimize"}],
            search_space={"train.lr": "choice(1e3, 10, 2e-3)"},
            overrides=["train.steps=100", "train.eval_every=20"],
        ),
    )
    assert main([str(path)]) == 0
    folder = workdir / "reports" / "sweeps" / "d"
    trials = pd.read_csv(folder / "trials.csv").set_index("params_train.lr")
    assert trials.loc[2e-3, "state"] == "COMPLETE"
    for lr in (1e3, 10):
        assert trials.loc[lr, "state"] == "FAIL" and trials.loc[lr, "error"].startswith("TrainingDiverged")
    assert yaml.safe_load((folder / "best.yaml").read_text())["best"]["params"] == {"train.lr": 2e-3}


def test_a_study_whose_every_trial_fails_exits_1(workdir: Path, capsys) -> None:
    path = write_yaml(
        workdir / "f.yaml",
        tiny_study(
            "f",
            sampler={"name": "grid", "seed": 0},
            n_trials=1,
            objectives=[{"metric": "nll", "direction": "minimize"}],
            search_space={"train.lr": "choice(1e3)"},
        ),
    )
    assert main([str(path)]) == 1
    assert "every trial of study 'f' failed" in capsys.readouterr().err
    assert (workdir / "reports" / "sweeps" / "f" / "trials.csv").exists()


def test_optuna_dashboard_opens_the_study(workdir: Path) -> None:
    """`optuna-dashboard reports/sweeps/<study>/study.journal` serves the study and its trials (its WSGI
    app, called here as its server would)."""
    import json
    from wsgiref.util import setup_testing_defaults

    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    path = write_yaml(workdir / "s.yaml", tiny_study("dash", n_trials=2))
    assert main([str(path)]) == 0
    app = optuna_dashboard.wsgi(str(workdir / "reports" / "sweeps" / "dash" / "study.journal"))

    def get(route: str) -> dict:
        environ: dict = {"PATH_INFO": route}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = app(environ, lambda s, h, exc_info=None: status.append(s))
        assert status[0].startswith("200"), status
        return json.loads(b"".join(body))

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "dash"
    assert len(get(f"/api/studies/{summary['study_id']}")["trials"]) == 2


def test_heartbeat_settings_are_not_part_of_the_definition(workdir: Path) -> None:
    """Trials stay comparable when only the heartbeat changes: the stored study resumes, nothing is refused
    or archived (a study made before heartbeats, like the committed ot_vs_vp, resumes the same way)."""
    path = write_yaml(workdir / "h.yaml", tiny_study("h", n_trials=1))
    assert main([str(path)]) == 0
    write_yaml(path, tiny_study("h", n_trials=2, heartbeat={"interval": 2, "grace_period": 9}))
    assert main([str(path), "--archive-changed"]) == 0
    assert not (workdir / "reports" / "sweeps" / "h" / "archive").exists()
    assert list(pd.read_csv(workdir / "reports" / "sweeps" / "h" / "trials.csv").number) == [0, 1]


def test_a_study_error_names_the_study_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The base params file's errors and a dataset the base cannot run come under the study file's name,
    with the closest allowed name; exit 2 before any work."""
    bad_base = write_yaml(workdir / "s1.yaml", {**tiny_study(), "base": "no_such_params.yaml"})
    assert main([str(bad_base)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad_base}: base: no_such_params.yaml: cannot read")
    bad_dataset = write_yaml(workdir / "s2.yaml", {**tiny_study(), "dataset": "moonz"})
    assert main([str(bad_dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad_dataset}: dataset: 'moonz' is not one of") and "did you mean 'moons'?" in err
    bad_metric = write_yaml(
        workdir / "s3.yaml", {**tiny_study(), "objectives": [{"metric": "nl", "direction": "minimize"}]}
    )
    assert main([str(bad_metric)]) == 2
    assert "objectives[0].metric: 'nl' is not one of" in capsys.readouterr().err
    assert not (workdir / "reports").exists()


@pytest.mark.slow
def test_trials_are_logged_to_mlflow_and_a_failing_tracker_only_warns(workdir: Path, capsys) -> None:
    from mlflow import MlflowClient

    db = f"sqlite:///{workdir / 'mlflow.db'}"
    path = write_yaml(workdir / "s.yaml", tiny_study("logged", n_trials=2, loggers={"mlflow": {"tracking_uri": db}}))
    assert main([str(path)]) == 0
    trials = pd.read_csv(workdir / "reports" / "sweeps" / "logged" / "trials.csv")
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("logged").experiment_id])
    assert len(runs) == 2  # one run per trial, called by fmexp's worker after each
    for run in runs:
        row = trials[trials["params_method.path"] == run.data.params["method.path"]].iloc[0]
        assert run.data.metrics["nll"] == pytest.approx(row["nll"]) and run.data.metrics["nfe"] == row["nfe"]
    broken = write_yaml(
        workdir / "b.yaml",
        tiny_study("broken", n_trials=1, loggers={"mlflow": {"tracking_uri": "sqlite:////proc/no/such/mlflow.db"}}),
    )
    assert main([str(broken)]) == 0  # the study goes on
    assert "warning: logging trial 0 to mlflow failed" in capsys.readouterr().err
    assert len(pd.read_csv(workdir / "reports" / "sweeps" / "broken" / "trials.csv")) == 1
