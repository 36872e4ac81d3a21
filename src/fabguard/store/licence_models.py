"""Feature licences: each product's licence-signing key and certificate, and every licence issued.

The ledger entry (``licence.issued``) is the record an auditor checks; the ``licences`` row keeps the
signed document for listing and re-delivery.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class LicenceSigner(Base):
    """One of a product's licence-signing keys (by reference into the key store) and its certificate under the
    root. A product signs with its newest signer that is neither retired nor revoked nor pending; a retired
    signer's licences stay valid (the overlap of a rotation), a revoked one's certificate is on the root's
    CRL; a pending one (an offline root's, waiting for its ceremony) has no certificate yet, only the CSR the
    ceremony signs (``csr_pem``, kept after the import as what was asked)."""

    __tablename__ = "licence_signing_keys"
    __table_args__ = (
        UniqueConstraint("product_id", "generation"),
        CheckConstraint("certificate_pem IS NOT NULL OR csr_pem IS NOT NULL", name="certificate_or_csr"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(String(63), ForeignKey("products.id"))
    generation: Mapped[int] = mapped_column(Integer)
    key_ref: Mapped[str] = mapped_column(String(200))
    certificate_pem: Mapped[str | None] = mapped_column(Text, nullable=True)  # None while pending
    csr_pem: Mapped[str | None] = mapped_column(Text, nullable=True)  # an offline root's signer's request
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)

    @property
    def pending(self) -> bool:
        """Waiting for its certificate from an offline root's ceremony (it has only its CSR)."""
        return self.certificate_pem is None


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
