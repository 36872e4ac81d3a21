"""The auth generation: one counter (``counters`` row ``auth_generation``, made by migration 0027) that every
change to who may authenticate bumps in its own transaction, so each server process's cache of identities
(``service.core.auth_cache``) knows, by reading one value, whether what it holds still stands (ADR 0017)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from fabguard.store.db import Database
from fabguard.store.models import Counter

AUTH_GENERATION = "auth_generation"
_READ = "SELECT value FROM counters WHERE name = 'auth_generation'"  # AUTH_GENERATION, a constant


def bump_auth_generation(session: Session) -> None:
    """Invalidate every process's cached identities when ``session`` commits (and not before: a process
    reading the old value until then still holds what the database says)."""
    session.execute(update(Counter).where(Counter.name == AUTH_GENERATION).values(value=Counter.value + 1))


def read_auth_generation(db: Database) -> int:
    """The current generation: one indexed read of one value, without an ORM session."""
    return int(db.read_value(_READ))


__all__ = ["AUTH_GENERATION", "bump_auth_generation", "read_auth_generation"]
