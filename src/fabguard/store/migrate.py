"""Schema migrations with Alembic, run programmatically: ``upgrade`` brings a database to the code's revision
(and seeds its counters) when asked to, never on its own; ``schema_status`` says where a database stands."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text

from fabguard.store.analytics_models import AnalyticsState
from fabguard.store.db import Database
from fabguard.store.eventlog import EVENT_COUNTER
from fabguard.store.models import Counter

MIGRATIONS = Path(__file__).parent / "migrations"
# Held while a PostgreSQL database is upgraded, so servers started together with ``--migrate`` take turns
# (the second finds the schema at the code's revision and does nothing). Any constant of 64 bits.
_UPGRADE_LOCK = 0x46475F4D49475241


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


@functools.cache  # the revisions of the installed code: read once per process (about 30 ms)
def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def code_revision() -> str:
    """The revision this code's schema is at (the newest migration)."""
    head = _scripts().get_current_head()
    assert head is not None, "no migrations"
    return head


SchemaState = Literal["current", "behind", "ahead"]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the code: ``database`` is None for an empty database."""

    database: str | None
    code: str
    state: SchemaState


def database_revision(db: Database) -> str | None:
    """The revision recorded in the database (None if it holds no FabGuard schema yet)."""
    with db.read() as s:
        return MigrationContext.configure(s.connection()).get_current_revision()


def schema_status(db: Database) -> SchemaStatus:
    """Whether ``db`` is at the code's revision, behind it (an upgrade brings it there) or ahead of it (a
    newer FabGuard upgraded it: a revision this code does not know). Raises ``Unavailable`` if unreachable."""
    current, head = database_revision(db), code_revision()
    if current == head:
        return SchemaStatus(current, head, "current")
    known = current is None or any(script.revision == current for script in _scripts().walk_revisions())
    return SchemaStatus(current, head, "behind" if known else "ahead")


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the code's, by default) and seed the counters."""
    with db.engine.begin() as conn:
        if not db.is_sqlite:  # SQLite's upgrade holds the file's write lock already
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        cfg = alembic_config(db)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    if revision != "head":  # an older schema, for tests of upgrades: its tables are as that release had them
        return
    with db.transaction() as s:
        if s.execute(select(Counter).where(Counter.name == EVENT_COUNTER)).first() is None:
            s.execute(insert(Counter).values(name=EVENT_COUNTER, value=0))
        if s.get(AnalyticsState, "cursor") is None:
            s.add(AnalyticsState(key="cursor", value="0"))  # the analytics projector's cursor
