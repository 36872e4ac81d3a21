"""Consistent copies of a running database, and their restore: per engine, with the engine's own tools.

SQLite: the online backup API (``sqlite3.Connection.backup``) in one step, which reads one snapshot while
the server keeps writing (WAL). PostgreSQL: ``pg_dump`` (custom format) at a snapshot exported by an open
repeatable-read transaction, so what the caller reads in that transaction is exactly what the dump holds;
``pg_restore`` in one transaction into an empty database.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from fabguard.domain.errors import ConfigurationError, FabGuardError
from fabguard.store.db import Database, require_driver

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ConfigurationError(f"the SQLite database {url} is not a file")
    return Path(url.database)


def sqlite_online_copy(db: Database, dest: Path) -> None:
    """Copy the live SQLite database to ``dest`` (a new file), consistent at one moment, writers undisturbed."""
    source = sqlite3.connect(sqlite_path(db.url), timeout=60)
    try:
        target = sqlite3.connect(dest)
        try:
            # pages=-1: the whole database in one step, so under one read snapshot (a multi-step copy
            # restarts whenever another connection writes, and may never finish on a busy line).
            source.backup(target, pages=-1)
            # The copy is one self-contained file: no WAL beside it.
            target.execute("PRAGMA journal_mode=DELETE")
            (check,) = target.execute("PRAGMA quick_check").fetchone()
        finally:
            target.close()
    finally:
        source.close()
    if check != "ok":
        raise FabGuardError(f"the SQLite copy fails its integrity check: {check}", code="backup_failed", status=500)


@contextmanager
def read_database(url: str) -> Iterator[Session]:
    """A read-only session on a database by URL, without an instance's engine set-up."""
    require_driver(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def read_sqlite_file(path: Path) -> AbstractContextManager[Session]:
    """A read-only session on an SQLite file that is not an instance's live database (a copy, a restore)."""
    return read_database(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")


@contextmanager
def pg_snapshot(db: Database) -> Iterator[tuple[str, Session]]:
    """An open read-only repeatable-read transaction and the id of its exported snapshot: what the session
    reads is what ``pg_dump --snapshot`` of that id dumps, whatever commits meanwhile."""
    with db.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
        with Session(bind=conn) as session:
            yield snapshot, session


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client tool: on PATH, else in Debian's /usr/lib/postgresql/<ver>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for directory in sorted(glob.glob(PG_BIN_GLOB), reverse=True):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ConfigurationError(
        f"{name} is not installed (not on PATH nor in {PG_BIN_GLOB}): install Debian's postgresql-client"
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URI for a SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``), and the
    environment carrying its password, which never goes on a command line."""
    u = make_url(url)
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return u.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _run(cmd: list[str], env: dict[str, str], code: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise FabGuardError(
            f"{Path(cmd[0]).name} failed (exit {done.returncode}): {detail[-1] if detail else 'no output'}",
            code=code,
            status=500,
        )


def pg_dump(db: Database, dest: Path, snapshot: str) -> None:
    """``pg_dump`` the instance's database, custom format, at ``snapshot`` (held open by the caller)."""
    uri, env = _libpq(db.url.render_as_string(hide_password=False))
    cmd = [pg_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", f"--file={dest}", f"--dbname={uri}"]
    _run(cmd, env, "backup_failed")


def pg_is_empty(url: str) -> bool:
    """Whether the database holds no table, view or sequence of its own (what a restore may write into)."""
    with read_database(url) as s:
        n = s.execute(
            text(
                "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
            )
        ).scalar_one()
    return int(n) == 0


def pg_restore(url: str, dump: Path) -> None:
    """``pg_restore`` a dump into an empty database, all or nothing, owned by the connecting user."""
    uri, env = _libpq(url)
    cmd = [
        pg_tool("pg_restore"),
        "--single-transaction",
        "--exit-on-error",
        "--no-owner",
        "--no-privileges",
        f"--dbname={uri}",
        str(dump),
    ]
    _run(cmd, env, "restore_failed")
