"""Identity pools per product and what they gave out (issue 29, docs/identities.md).

A pool's counters (``next_serial``, ``next_mac_unit``) are taken only by a conditional ``UPDATE`` under
the pool's row lock (``store/identities.py``), with a ``CHECK`` behind it, like an order's quota. Each
unit's identities are one ``unit_identities`` row, its MAC addresses one ``allocated_macs`` row each:
the unique keys (a product's serial, a passcode, an address) are the last line against giving one twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class IdentityPoolRow(Base):
    """A product's pools: its serial format, MAC block and Matter onboarding settings, and its counters."""

    __tablename__ = "identity_pools"
    __table_args__ = (
        CheckConstraint(
            "next_serial >= 0 AND (serial_capacity IS NULL OR next_serial <= serial_capacity)", name="serials_within"
        ),
        CheckConstraint(
            "next_mac_unit >= 0 AND (mac_capacity IS NULL OR next_mac_unit <= mac_capacity)", name="macs_within"
        ),
    )
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    serial_prefix: Mapped[str | None] = mapped_column(String(32), nullable=True)
    serial_width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    serial_check: Mapped[str | None] = mapped_column(String(32), nullable=True)
    serials_required: Mapped[bool] = mapped_column(Boolean, default=False)
    serial_capacity: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    next_serial: Mapped[int] = mapped_column(BigInteger, default=0)
    mac_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)
    mac_first: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mac_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mac_per_unit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mac_capacity: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    next_mac_unit: Mapped[int] = mapped_column(BigInteger, default=0)
    matter_vendor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    matter_product_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    matter_flow: Mapped[int | None] = mapped_column(Integer, nullable=True)
    matter_discovery: Mapped[int | None] = mapped_column(Integer, nullable=True)
    matter_iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UnitIdentityRow(Base):
    """One unit's identities, allocated to its order: serial, MAC addresses, Matter onboarding data."""

    __tablename__ = "unit_identities"
    __table_args__ = (UniqueConstraint("product_id", "serial", name="uq_unit_identities_product_serial"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    serial: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    fixture_id: Mapped[str] = mapped_column(String(63))
    serial_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mac_unit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mac_first: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mac_count: Mapped[int] = mapped_column(Integer, default=0)
    vendor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    matter_product_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flow: Mapped[int | None] = mapped_column(Integer, nullable=True)
    discovery: Mapped[int | None] = mapped_column(Integer, nullable=True)
    passcode: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    discriminator: Mapped[int | None] = mapped_column(Integer, nullable=True)
    salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    iterations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    verifier: Mapped[str | None] = mapped_column(String(194), nullable=True)
    allocated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AllocatedMac(Base):
    """Every MAC address given out, once: the primary key is the address."""

    __tablename__ = "allocated_macs"
    address: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[str] = mapped_column(String(63))
    serial: Mapped[str] = mapped_column(String(64))
