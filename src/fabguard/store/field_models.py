"""Field checks: the challenges handed out (single use, short-lived) and every check's outcome.

A nonce is kept only as its SHA-256 (like tokens): the table leaks no challenge a caller could answer.
Using one is ``UPDATE ... SET used_at WHERE used_at IS NULL``, so of two checks racing on one nonce
exactly one wins on either engine.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class FieldNonce(Base):
    __tablename__ = "field_nonces"
    nonce_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    issued_to: Mapped[str] = mapped_column(String(128))


class FieldCheck(Base):
    """One verification's outcome; ``place`` is the source label, else ``addr:<client address>``."""

    __tablename__ = "field_checks"
    __table_args__ = (Index("ix_field_checks_serial_at", "serial", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    seq: Mapped[int] = mapped_column(BigInteger)
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cert_sha256: Mapped[str] = mapped_column(String(64))
    genuine: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    clone: Mapped[str | None] = mapped_column(String(16), nullable=True)
    place: Mapped[str] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
