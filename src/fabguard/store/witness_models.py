"""Cosigned checkpoints: the witnesses (CM sites' cosigner keys) and the cosignatures they sent.

A cosignature is kept as the signature line the witness made, beside the checkpoint it signs; the
served and exported note is the checkpoint's own note with these lines under it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class WitnessKey(Base):
    """A site's witness: its cosigner name and Ed25519 key (C2SP tlog-cosignature, type 0x04)."""

    __tablename__ = "witness_keys"
    __table_args__ = (UniqueConstraint("name", "key_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[bytes] = mapped_column(LargeBinary(4))
    verifier_key: Mapped[str] = mapped_column(Text)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    registered_by: Mapped[str] = mapped_column(String(128))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CosignatureRow(Base):
    """One witness's cosignature of one checkpoint (the first one it sent for that size is kept)."""

    __tablename__ = "cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_size", "witness_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint_size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("checkpoints.size")
    )
    witness_id: Mapped[int] = mapped_column(ForeignKey("witness_keys.id"))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
