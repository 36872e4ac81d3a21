"""Leases: which process may run a singleton job (e.g. webhook delivery), and until when.

A lease is a row of ``leases``: a name, its holder and when it expires. Every function works in the
caller's transaction and takes ``now`` from the caller, so expiry is tested without sleeping. A lease
is held while ``now < expires_at``; from then on anyone may take it.

Taking one is an ``INSERT … ON CONFLICT DO NOTHING`` followed by ``UPDATE … WHERE holder = me OR
expires_at <= now``; the UPDATE's row count says who won. On PostgreSQL (READ COMMITTED) an insert
that conflicts with another transaction's uncommitted insert waits for it, and an UPDATE that finds
the row locked re-checks its WHERE against the committed row, so of any number of racing processes
exactly one takes a free or expired lease. On SQLite writers are serialised (``BEGIN IMMEDIATE``).

``Hold`` is one holder's discipline over several transactions: take the lease at the start of a
round, renew it before each step that must not overlap another holder's, release it at the end.

Holders judge expiry by their own clocks: hosts sharing a database must keep them close (NTP), and
a lease's users must leave a margin for the difference.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fabguard.domain.errors import ConfigurationError
from fabguard.store.analytics_models import WorkerLease
from fabguard.store.db import Database

__all__ = ["Hold", "acquire", "holder_id", "holder_of", "release", "release_others"]

log = logging.getLogger("fabguard.leases")

_INSERTS: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def acquire(session: Session, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Hold ``name`` until ``now + ttl`` if it is free, expired or already ``holder``'s (a renewal).

    False when another holder's lease has not expired; nothing changes then.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        raise ConfigurationError(f"leases need SQLite or PostgreSQL, not {dialect}")
    expires_at = now + ttl
    session.execute(
        _INSERTS[dialect](WorkerLease)
        .values(name=name, holder=holder, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=[WorkerLease.name])
    )
    # Also runs after our own insert (then it matches on holder): one path decides every case.
    result = session.execute(
        update(WorkerLease)
        .where(WorkerLease.name == name, or_(WorkerLease.holder == holder, WorkerLease.expires_at <= now))
        .values(holder=holder, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release(session: Session, name: str, holder: str) -> bool:
    """Give ``name`` up if ``holder`` holds it (expired or not); False when it did not."""
    result = session.execute(
        delete(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_others(session: Session, prefix: str, keep: str) -> int:
    """Give up every lease named ``prefix...`` but ``keep``, expired or not; returns how many went."""
    result = session.execute(
        delete(WorkerLease)
        .where(WorkerLease.name.startswith(prefix, autoescape=True), WorkerLease.name != keep)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def holder_of(session: Session, name: str, *, now: datetime) -> str | None:
    """Who holds ``name`` at ``now``; None when nobody does (never taken, released or expired)."""
    return session.execute(
        select(WorkerLease.holder).where(WorkerLease.name == name, WorkerLease.expires_at > now)
    ).scalar_one_or_none()


def holder_id() -> str:
    """A holder id unique to one holder: host, process and a random part (two in one process differ)."""
    return f"{socket.gethostname()[:100]}/{os.getpid()}/{secrets.token_hex(6)}"


class Hold:
    """One holder's hold on lease ``name`` across transactions, each renewal good for ``ttl``.

    Not thread-safe: meant for the one thread that runs the job. Taking over and losing the lease are
    logged (they are operational facts, not decisions for the ledger).
    """

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        ttl: timedelta,
        clock: Callable[[], datetime],
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.clock = clock
        self.holder = holder or holder_id()
        # When our hold ends, as we set it; None while we do not hold the lease.
        self._expires: datetime | None = None

    @property
    def held(self) -> bool:
        return self._expires is not None and self.clock() < self._expires

    def take(self) -> bool:
        """Hold the lease, taking it over when free or expired; False while another holder has it."""
        return self._acquire() is not None

    def renew(self, room: timedelta) -> bool:
        """Extend an unbroken hold so that at least ``room`` is left; False when it lapsed, was lost or is short."""
        if not self.held:
            # Another holder may have come and gone in the gap, so whatever the job read under this
            # hold may be stale: only a new ``take`` (and a fresh read) may go on.
            if self._expires is not None:
                log.warning("lease %s of %s lapsed", self.name, self.holder)
                self._expires = None
            return False
        expires = self._acquire()
        # The renewal may have waited on a lock: count the room from now, not from before it.
        return expires is not None and expires - self.clock() >= room

    def release(self) -> None:
        """Give the lease up now, so another holder can take it without waiting for it to expire."""
        if self._expires is None:
            return
        self._expires = None
        with self.db.transaction() as s:
            released = release(s, self.name, self.holder)
        if released:
            log.info("lease %s released by %s", self.name, self.holder)

    def _acquire(self) -> datetime | None:
        now = self.clock()
        had = self._expires is not None
        with self.db.transaction() as s:
            ok = acquire(s, self.name, self.holder, now=now, ttl=self.ttl)
            other = holder_of(s, self.name, now=now) if had and not ok else None
        if not ok:
            if had:
                log.warning("lease %s of %s lost to %s", self.name, self.holder, other)
            self._expires = None
            return None
        if not had:
            log.info("lease %s taken by %s", self.name, self.holder)
        self._expires = now + self.ttl
        return self._expires
