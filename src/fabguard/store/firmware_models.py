"""Firmware tables: releases (the image encrypted at rest, its wrapped data key, signed manifest, SBOM)
and their attachments to orders. They share the declarative base of ``fabguard.store.base``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class FirmwareRelease(Base):
    """One firmware version of one product. The image exists here only as AES-256-GCM ciphertext."""

    __tablename__ = "firmware_releases"
    __table_args__ = (
        UniqueConstraint("product_id", "version", name="uq_firmware_releases_product_version"),
        CheckConstraint("state IN ('uploaded', 'approved', 'withdrawn')", name="state_known"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Loaded only when asked for: decisions about a release never need its megabytes.
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    image_nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(64))
    key_nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    kek_id: Mapped[str] = mapped_column(String(16))
    manifest: Mapped[str] = mapped_column(Text)
    manifest_signature: Mapped[bytes] = mapped_column(LargeBinary(128))
    signer: Mapped[str] = mapped_column(String(64))
    sbom: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    dual_control: Mapped[bool] = mapped_column(Boolean)
    uploaded_by: Mapped[str] = mapped_column(String(128))
    # The person who uploaded it (None for the local operator, who acts without a token).
    uploader_person: Mapped[str | None] = mapped_column(String(32), nullable=True)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdraw_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class FirmwareAttachment(Base):
    """A release offered to the units of one order."""

    __tablename__ = "firmware_attachments"
    release_id: Mapped[str] = mapped_column(ForeignKey("firmware_releases.id"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True, index=True)
    attached_by: Mapped[str] = mapped_column(String(128))
    attached_at: Mapped[datetime] = mapped_column(UTCDateTime())


__all__ = ["FirmwareAttachment", "FirmwareRelease"]
