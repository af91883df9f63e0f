"""Optuna storages by URL: a journal file (``journal:///FILE``, the default, in the study's folder),
SQLite, or a shared PostgreSQL or MySQL database; and the URL as we print it, password masked."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend

__all__ = ["STORAGE_ENV", "STORAGE_SCHEMES", "default_storage", "make_storage", "redact", "for_dashboard"]

STORAGE_ENV = "FMEXP_STORAGE"
STORAGE_SCHEMES = ("journal", "sqlite", "postgresql", "mysql")


def default_storage(folder: Path) -> str:
    """A journal file in the study's folder; a ``study.db`` left by an earlier version is kept on."""
    if (folder / "study.db").exists():
        return f"sqlite:///{(folder / 'study.db').as_posix()}"
    return f"journal:///{(folder / 'study.journal').as_posix()}"


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: ``journal:///FILE`` is a JournalFileBackend (the local
    multi-process storage), anything else an RDBStorage."""
    if url.startswith("journal:///"):
        path = Path(url[len("journal:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite"):
        return _sqlite_storage(url)
    return optuna.storages.RDBStorage(url)


def _sqlite_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDBStorage on SQLite whose transactions each hold the database's write lock from their start.

    Optuna changes a trial's state by ``SELECT ... FOR UPDATE`` and then ``UPDATE``; SQLite ignores
    ``FOR UPDATE``, and Python's sqlite3 begins a transaction only at the ``UPDATE``, so two processes
    could both read WAITING and both take one slot. Here sqlite3 begins nothing itself
    (``isolation_level=None``) and every transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's
    recipe for SQLite transactions), which makes the read and the write one step. Writers wait for
    the lock up to 60 s, not 5."""
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60, "isolation_level": None}})
    event.listen(storage.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def redact(url: str) -> str:
    """The storage URL with its password masked, as everything we print or write shows it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if url.startswith("journal://"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL sqlalchemy can parse: hide everything between :// and @
        return re.sub(r"://[^@/]*@", "://***@", url)


def for_dashboard(url: str) -> str:
    """The storage as ``optuna-dashboard`` takes it on its command line: a journal as its plain file path
    (the dashboard does not read ``journal:///`` URLs), a database as its URL, password masked."""
    return url[len("journal:///") :] if url.startswith("journal:///") else redact(url)
