"""Idempotency keys: per fixture, key and part, the request's fingerprint and the answer given to it.

``part`` 0 is the request itself; a batch of provisioning requests keeps each unit's answer as part
``index + 1`` beside it. A row without a status is a request still at work (only a batch's row is ever
seen so: the others get their answer in the transaction that took them); its ``holder`` names the
liveness lease (``leases``) of the server process working on it, or is empty (a process without one,
or a row from before holders were kept).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Integer, String, Table, Text, and_, bindparam, delete, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from fabguard.store.analytics_models import WorkerLease
from fabguard.store.base import Base, UTCDateTime


class IdempotencyKeyRow(Base):
    __tablename__ = "idempotency_keys"
    fixture_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    holder: Mapped[str | None] = mapped_column(String(63), nullable=True)


def _pk(fixture_id: str, key: str, part: int) -> ColumnElement[bool]:
    t = IdempotencyKeyRow
    return and_(t.fixture_id == fixture_id, t.key == key, t.part == part)


def insert_key(
    s: Session, fixture_id: str, key: str, part: int, fingerprint: str, now: datetime, *, holder: str | None = None
) -> bool:
    """Take the key (for ``holder``, if given): True if this transaction inserted it. On PostgreSQL a rival
    transaction holding the same key makes this wait for its end; False then means the rival committed."""
    table = cast(Table, IdempotencyKeyRow.__table__)
    ins = postgresql.insert(table) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
    values = {
        "fixture_id": fixture_id,
        "key": key,
        "part": part,
        "fingerprint": fingerprint,
        "created_at": now,
        "holder": holder,
    }
    # RETURNING rather than rowcount: psycopg's rowcount for an INSERT .. ON CONFLICT is not to be relied on.
    inserted = s.execute(ins.values(values).on_conflict_do_nothing().returning(table.c.part)).first()
    return inserted is not None


def find_key(s: Session, fixture_id: str, key: str, part: int) -> IdempotencyKeyRow | None:
    return s.execute(select(IdempotencyKeyRow).where(_pk(fixture_id, key, part))).scalar_one_or_none()


def find_keys(s: Session, keys: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str, int], IdempotencyKeyRow]:
    """The rows of these (fixture, key, part) triples that exist, in one statement built once.

    The statement asks for every part of the keys' (fixture, key) pairs, through the primary key's first two
    columns (an ``IN`` list on each: a few pairs to seek, the same statement whatever the number of keys, so
    compiled once), and the triples asked for are picked here. Not a row-value ``IN``: SQLite scans the whole
    table for that; and not an OR of lookups, a statement of its own for each number of keys."""
    if not keys:
        return {}
    wanted = set(keys)
    fixtures, names = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
    found = s.execute(_FIND_KEYS, {"fixtures": fixtures, "keys": names}).scalars()
    return {pk: row for row in found if (pk := (row.fixture_id, row.key, row.part)) in wanted}


_FIND_KEYS = select(IdempotencyKeyRow).where(
    IdempotencyKeyRow.fixture_id.in_(bindparam("fixtures", expanding=True)),
    IdempotencyKeyRow.key.in_(bindparam("keys", expanding=True)),
)


def answer_row(
    fixture_id: str, key: str, part: int, fingerprint: str, now: datetime, status: int, body: dict[str, Any]
) -> dict[str, Any]:
    """A key taken and answered at once (for :func:`insert_answered`)."""
    return {
        "fixture_id": fixture_id,
        "key": key,
        "part": part,
        "fingerprint": fingerprint,
        "created_at": now,
        "status": status,
        "body": json.dumps(body, separators=(",", ":")),
    }


def insert_answered(s: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert answered keys (:func:`answer_row`) in one statement; returns how many went in. A key a rival
    took meanwhile is left alone (on PostgreSQL after waiting for the rival's end): fewer than ``rows``."""
    if not rows:
        return 0
    statement = _INSERT_ANSWERED_PG if s.get_bind().dialect.name == "postgresql" else _INSERT_ANSWERED_SQLITE
    # One executemany: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues"), RETURNING the rows that
    # went in, from a statement built once (building a multi-row VALUES per group cost more than running it).
    return len(s.execute(statement, list(rows)).all())


_answered_table = cast(Table, IdempotencyKeyRow.__table__)
_INSERT_ANSWERED_PG = postgresql.insert(_answered_table).on_conflict_do_nothing().returning(_answered_table.c.part)
_INSERT_ANSWERED_SQLITE = sqlite.insert(_answered_table).on_conflict_do_nothing().returning(_answered_table.c.part)


def set_answer(s: Session, fixture_id: str, key: str, part: int, status: int, body: str) -> None:
    s.execute(
        update(IdempotencyKeyRow)
        .where(_pk(fixture_id, key, part))
        .values(status=status, body=body)
        .execution_options(synchronize_session=False)
    )


def take_over(
    s: Session,
    fixture_id: str,
    key: str,
    *,
    holder: str | None,
    stale_before: datetime,
    now: datetime,
    live_at: datetime,
) -> bool:
    """Restart a request (part 0) still unanswered whose holder is gone, for ``holder``: True if this one did.

    Gone: its holder's liveness lease has expired at ``live_at`` (wall-clock time, as leases are kept)
    or was given up, or, whoever holds it, it was taken before ``stale_before``. On PostgreSQL a rival
    taking it over at the same time waits for this row; it then finds this holder alive."""
    t = IdempotencyKeyRow
    alive = exists().where(WorkerLease.name == t.holder, WorkerLease.expires_at > live_at)
    result = s.execute(
        update(t)
        .where(
            _pk(fixture_id, key, 0),
            t.status.is_(None),
            or_(t.created_at < stale_before, and_(t.holder.is_not(None), ~alive)),
        )
        .values(created_at=now, holder=holder)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def delete_key(s: Session, fixture_id: str, key: str, *, part: int | None = None) -> None:
    """Forget a key (all its parts, or one)."""
    t = IdempotencyKeyRow
    q = delete(t).where(t.fixture_id == fixture_id, t.key == key)
    s.execute(q if part is None else q.where(t.part == part))


def delete_expired(s: Session, before: datetime, *, fixture_id: str | None = None, key: str | None = None) -> int:
    """Forget keys taken before ``before`` (all, or one fixture's one key); returns how many rows went."""
    t = IdempotencyKeyRow
    q = delete(t).where(t.created_at < before)
    if fixture_id is not None and key is not None:
        q = q.where(t.fixture_id == fixture_id, t.key == key)
    return int(s.execute(q).rowcount)  # type: ignore[attr-defined]


__all__ = [
    "IdempotencyKeyRow",
    "answer_row",
    "delete_expired",
    "delete_key",
    "find_key",
    "find_keys",
    "insert_answered",
    "insert_key",
    "set_answer",
    "take_over",
]
