"""Browser sessions of the dashboard (migration 0026): a token posted once becomes an HttpOnly cookie
whose secret is kept only as its SHA-256 (like tokens), bound to the token that opened it, so the
token's revocation or expiry ends it and signing out ends it alone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from fabguard.store.base import Base, UTCDateTime


class BrowserSession(Base):
    __tablename__ = "browser_sessions"
    secret_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
