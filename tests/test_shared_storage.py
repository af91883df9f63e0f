"""Two workers share one study through PostgreSQL, started here on loopback, and stop at n_trials."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from tests.helpers import tiny_params, tiny_study, write_yaml

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 is not installed (.ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway server on 127.0.0.1; as root, it runs as the postgres user (initdb refuses root)."""
    pytest.importorskip("psycopg")
    as_user: list[str] = []
    top = Path(tempfile.mkdtemp(prefix="fmexp-pg-"))  # not under pytest's 0700 tmp: the server's user must reach it
    data = top / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        os.chmod(top, 0o755)
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "fmexp"], check=True, capture_output=True)
    subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://fmexp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def test_two_workers_share_one_study(tmp_path: Path, postgres: str) -> None:
    write_yaml(tmp_path / "params.yaml", tiny_params())
    study = write_yaml(tmp_path / "shared.yaml", tiny_study("shared", n_trials=4))
    env = {**os.environ, "FMEXP_STORAGE": postgres}
    workers = [subprocess.Popen([sys.executable, "-m", "fmexp.sweep", str(study), "--reports-dir", f"w{i}"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    # each worker stops once the shared total reaches n_trials; one trial in flight per worker may finish after
    assert 4 <= len(trials) <= 5
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both machines contributed
    assert not (tmp_path / "w0" / "sweeps" / "shared" / "study.db").exists()  # nothing embedded
