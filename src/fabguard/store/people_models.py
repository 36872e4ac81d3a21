"""People: who holds tokens. Dual control compares these records, never tokens or their names.

A person has a unique name, a contact, the roles they hold (a token carries one of them, never
another), a site when they hold the operator role, and a state (``suspended`` refuses all their
tokens). ``approving_since`` is when a token carrying approver or admin was first made for them; it is
never cleared, so once two people have had one, granting those roles stays two people's act
(``service/access/people.py``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (CheckConstraint("state IN ('active', 'suspended')", name="state_known"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    contact: Mapped[str] = mapped_column(String(200))
    # The roles held, comma-separated in a fixed order ("" for none).
    roles: Mapped[str] = mapped_column(String(100))
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    approving_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


__all__ = ["Person"]
