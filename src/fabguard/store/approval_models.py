"""Dual control: a request for a dangerous act that a second, different person approves or rejects.

One table for every kind of act (``service/approvals/registry.py`` says how each slice registers what its
kinds do once approved).
The state CHECK and the ``decided_*`` columns are filled in the one transaction that decides it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class ApprovalRequest(Base):
    """A pending (then approved, rejected or expired) request for one act under dual control."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'approved', 'rejected', 'expired')", name="state_known"),
        Index("ix_approval_requests_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[str] = mapped_column(Text)
    # For an act that hands out a secret (an admin token): the SHA-256 of the secret the requester was
    # given when asking. The secret itself is never stored; it works only once the act is approved.
    secret_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    requester_name: Mapped[str] = mapped_column(String(128))
    requester_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The person behind the requester's token (None for the local operator): what dual control compares.
    requester_person: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decider_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # What the act did (JSON), e.g. the token id it made: filled when it is approved.
    result: Mapped[str | None] = mapped_column(Text, nullable=True)


__all__ = ["ApprovalRequest"]
