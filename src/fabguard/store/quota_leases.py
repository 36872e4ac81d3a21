"""Quota leases granted to offline site agents (not the worker leases of ``store.worker_leases``).

A lease takes its units out of the order's quota when it is issued (``reserve_units``), so the central
server and its agents together can never issue more than the order allows: the order's ``used`` counts
the leased units, and its ``CHECK (used <= quota)`` stands behind the reservation.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class QuotaLease(Base):
    """One lease: its terms, the agent CA it was issued for, the agent's ledger key, the signed bundle."""

    __tablename__ = "quota_leases"
    __table_args__ = (CheckConstraint("units > 0", name="units_positive"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    site_id: Mapped[str] = mapped_column(String(63))
    units: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str] = mapped_column(String(128))
    agent_ca: Mapped[str] = mapped_column(String(63))
    agent_ca_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    agent_ledger_key: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16))
    bundle: Mapped[str] = mapped_column(Text)
    # The agent log accepted so far (size and root), the units it holds, and the discrepancy that stands.
    synced_size: Mapped[int] = mapped_column(BigInteger, default=0)
    synced_root: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    units_synced: Mapped[int] = mapped_column(Integer, default=0)
    discrepancy: Mapped[str | None] = mapped_column(Text, nullable=True)
