"""Migrated, empty databases made once per test session and copied for each test.

Running every Alembic migration costs about 0.45 s per instance, most of what making one costs. So the
first test that asks for a database of an engine runs the real migrations once (``store.migrate.upgrade``:
the schema plus the counters every instance starts with) into a template; each test then gets a copy:
a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL.

A template is made per test session (per pytest-xdist worker), from the migrations of the tree under
test, and its name carries the head revision: adding or editing a migration can never leave a stale
template behind. It holds nothing that differs between instances: the keys, the certificates and the CA
rows (``seed_registry``) are made for each test by ``init_instance`` and ``Instance.open``.

tests/store/test_migrations.py does not use templates: it runs the migrations itself (marker ``migrations``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from pathlib import Path

import psycopg
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from fabguard.store.db import Database, sqlite_url
from fabguard.store.migrate import MIGRATIONS, upgrade

PG_ENV = "FABGUARD_TEST_PG_URL"
SQLITE_NAME = "fabguard.db"  # where an instance keeps its SQLite database (service.instance)

_directory: Path | None = None
_sqlite: Path | None = None
_pg: str | None = None  # the PostgreSQL template database's name


def migration_head() -> str:
    """The head revision(s) of the migrations in the tree under test, e.g. ``0016``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return "+".join(sorted(ScriptDirectory.from_config(cfg).get_heads()))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    admin = make_url(os.environ[PG_ENV])
    return psycopg.connect(
        host=admin.host, port=admin.port, user=admin.username, dbname=admin.database, autocommit=True
    )


def sqlite_template() -> Path:
    """The session's migrated SQLite file (made on first use)."""
    global _directory, _sqlite
    if _sqlite is None:
        _directory = Path(tempfile.mkdtemp(prefix="fabguard-template-"))
        path = _directory / f"template-{migration_head()}.db"
        db = Database(sqlite_url(path))
        try:
            upgrade(db)
        finally:
            db.dispose()
        # Fold the write-ahead log into the file, so that the file alone is the whole database.
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        _sqlite = path
    return _sqlite


def copy_sqlite_template(home: Path) -> None:
    """Put a copy of the migrated SQLite template where the instance in ``home`` keeps its database."""
    target = home / SQLITE_NAME
    if target.exists():
        raise FileExistsError(target)
    shutil.copyfile(sqlite_template(), target)
    target.chmod(0o600)  # as init_instance makes it: the owner's alone


def pg_template() -> str:
    """The name of the session's migrated PostgreSQL template database (made on first use)."""
    global _pg
    if _pg is None:
        head = re.sub(r"[^a-z0-9]", "_", migration_head().lower())[:32]
        name = f"fg_tpl_{head}_{secrets.token_hex(4)}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db = Database(make_url(os.environ[PG_ENV]).set(database=name).render_as_string(hide_password=False))
        try:
            upgrade(db)
        finally:
            db.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
        _pg = name
    return _pg


def create_pg_database(name: str, *, migrated: bool) -> None:
    """Create the PostgreSQL database ``name``: empty, or a copy of the migrated template."""
    template = f' TEMPLATE "{pg_template()}"' if migrated else ""
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"{template}')


def discard() -> None:
    """Remove the session's templates (at the end of the session)."""
    global _directory, _sqlite, _pg
    if _directory is not None:
        shutil.rmtree(_directory, ignore_errors=True)
    if _pg is not None and os.environ.get(PG_ENV):
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_pg}" WITH (FORCE)')
    _directory = _sqlite = _pg = None
