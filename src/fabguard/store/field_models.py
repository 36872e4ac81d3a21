"""Field checks: the replay set of used challenges, and every check's outcome.

Challenges are stateless (``pki.field_nonce``: the nonce carries its expiry and a MAC), so issuing one
writes nothing; ``field_nonces`` holds the nonces *answered*, each only as its SHA-256 (like tokens: the
table leaks no challenge a caller could answer), until its expiry. Using one is an ``INSERT ... ON
CONFLICT DO NOTHING RETURNING`` of its digest (``spend_nonces``), so of two checks racing on one nonce,
in one process or several, exactly one inserts it on either engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from fabguard.store.base import Base, UTCDateTime


class FieldNonce(Base):
    __tablename__ = "field_nonces"
    nonce_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    issued_to: Mapped[str] = mapped_column(String(128))  # since ADR 0015: the actor whose answer used it


class FieldCheck(Base):
    """One verification's outcome; ``place`` is the source label, else ``addr:<client address>``. ``seq``
    is its ``field.checked`` event, None for a genuine check with no clone signal (ADR 0015: kept as this
    row only, not as a ledger event)."""

    __tablename__ = "field_checks"
    __table_args__ = (Index("ix_field_checks_serial_at", "serial", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cert_sha256: Mapped[str] = mapped_column(String(64))
    genuine: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    clone: Mapped[str | None] = mapped_column(String(16), nullable=True)
    place: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(128))


def spend_nonces(s: Session, rows: Sequence[dict[str, object]]) -> set[str]:
    """Insert ``rows`` (``FieldNonce`` columns, distinct digests) into the replay set; the digests this
    transaction inserted. One already there is left out; on PostgreSQL a rival transaction holding one
    makes this wait for its end, and it is left out if the rival committed. Sorted, so two groups taking
    overlapping nonces in two processes wait for each other in one order and never deadlock."""
    if not rows:
        return set()
    table = cast(Table, FieldNonce.__table__)
    ins = postgresql.insert(table) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
    ordered = sorted(rows, key=lambda r: str(r["nonce_sha256"]))
    # RETURNING rather than rowcount: psycopg's rowcount for an INSERT .. ON CONFLICT is not to be relied on.
    # Parameters apart from the statement (SQLAlchemy's "insertmanyvalues"): one cached statement, sent
    # as multi-row VALUES, rather than a statement compiled afresh for every group's values.
    stmt = ins.on_conflict_do_nothing().returning(table.c.nonce_sha256)
    return {str(d) for d in s.execute(stmt, list(ordered)).scalars()}


def add_checks(s: Session, rows: Sequence[dict[str, object]]) -> list[int]:
    """Insert the ``field_checks`` rows of a group of checks in one statement; their ids, in order."""
    if not rows:
        return []
    stmt = insert(FieldCheck).returning(FieldCheck.id, sort_by_parameter_order=True)
    return [int(i) for i in s.execute(stmt, list(rows)).scalars()]
