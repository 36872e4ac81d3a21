"""Feature licences: each product's licence-signing key and certificate, and every licence issued.

The ledger entry (``licence.issued``) is the record an auditor checks; the ``licences`` row keeps the
signed document for listing and re-delivery.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class LicenceSigner(Base):
    """A product's licence-signing key (by reference into the key store) and its certificate under the root."""

    __tablename__ = "licence_signers"
    product_id: Mapped[str] = mapped_column(String(63), ForeignKey("products.id"), primary_key=True)
    key_ref: Mapped[str] = mapped_column(String(200))
    certificate_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Licence(Base):
    __tablename__ = "licences"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(63), ForeignKey("products.id"))
    serial: Mapped[str] = mapped_column(String(64), index=True)
    cert_sha256: Mapped[str] = mapped_column(String(64))
    features: Mapped[str] = mapped_column(Text)  # JSON list
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str] = mapped_column(String(128))
    document: Mapped[str] = mapped_column(Text)
    event_seq: Mapped[int] = mapped_column(Integer)


__all__ = ["Licence", "LicenceSigner"]
