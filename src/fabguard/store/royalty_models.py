"""Royalty rates: a product's per-unit rate, or an order's override of it, from a time on.

The ledger entry (``royalty.rate_set``) is what statements are computed from; this table is its
readable copy for listing rates and for the service's checks. The amount is decimal text, never a float.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class RoyaltyRate(Base):
    """One rate, set once and never changed: a later one for the same product or order supersedes it."""

    __tablename__ = "royalty_rates"
    __table_args__ = (Index("ix_royalty_rates_product_order", "product_id", "order_id", "effective_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(String(63), ForeignKey("products.id"))
    order_id: Mapped[str | None] = mapped_column(String(63), ForeignKey("orders.id"), nullable=True)
    amount: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())
    set_by: Mapped[str] = mapped_column(String(128))
    event_seq: Mapped[int] = mapped_column(Integer)


__all__ = ["RoyaltyRate"]
