"""Key attestation's trusted roots: per product, the TPM makers' and SE vendors' attestation CAs.

A product's policy is a column of ``products``; what backed a unit's certificate is a column of ``units``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class AttestationRoot(Base):
    """A CA certificate the product trusts to vouch for attestation keys (``tpm``) or SE keys (``se``)."""

    __tablename__ = "attestation_roots"
    __table_args__ = (
        UniqueConstraint("product_id", "kind", "sha256", name="uq_attestation_roots_product_kind_sha256"),
        CheckConstraint("kind IN ('tpm', 'se')", name="kind_known"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    certificate_pem: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
