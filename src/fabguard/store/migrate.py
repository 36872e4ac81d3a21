"""Schema migrations with Alembic, run programmatically so an instance upgrades itself (and seeds its counters)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from fabguard.store.analytics_models import AnalyticsState
from fabguard.store.db import Database
from fabguard.store.eventlog import EVENT_COUNTER
from fabguard.store.models import Counter

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision and seed the counters."""
    with db.engine.begin() as conn:
        cfg = alembic_config(db)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with db.transaction() as s:
        if s.execute(select(Counter).where(Counter.name == EVENT_COUNTER)).first() is None:
            s.execute(insert(Counter).values(name=EVENT_COUNTER, value=0))
        if s.get(AnalyticsState, "cursor") is None:
            s.add(AnalyticsState(key="cursor", value="0"))  # the analytics projector's cursor
