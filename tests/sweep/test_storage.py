"""Workers share one study through PostgreSQL, started here on loopback: exactly n_trials, and the
server's password never printed or written."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import (
    GRID,
    check_exact,
    tiny_params,
    tiny_study,
    workers_share,
    write_yaml,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.e2e,
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
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "fmexp"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://fmexp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(top, ignore_errors=True)


def test_three_workers_share_one_grid_study(tmp_path: Path, postgres: str) -> None:
    """Three worker processes on one PostgreSQL study: every grid point once, not one trial more."""
    write_yaml(tmp_path / "params.yaml", tiny_params())
    trials = workers_share(tmp_path, postgres, GRID)
    assert len(trials) == 6
    check_exact(trials, 6)
    assert not [
        p for p in (tmp_path / "w0" / "sweeps" / "p").glob("study.*") if p.suffix in (".db", ".journal")
    ]  # nothing embedded


def test_password_is_redacted_everywhere(tmp_path: Path, postgres: str) -> None:
    """A storage URL with a password: it appears in no output, file or report."""
    write_yaml(tmp_path / "params.yaml", tiny_params())
    secret = "s3cr3t-pw"
    url = postgres.replace("fmexp@", f"fmexp:{secret}@")  # trust auth: any password is accepted
    study = write_yaml(tmp_path / "pw.yaml", tiny_study("pw", n_trials=1))
    proc = subprocess.run(
        [sys.executable, "-m", "fmexp.sweep", str(study), "--storage", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "FMEXP_STORAGE"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "fmexp:***@" in proc.stdout and secret not in proc.stdout + proc.stderr
    written = [p for p in (tmp_path / "reports").rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]
