"""Browser sessions for the dashboard: an API token posted once opens a session whose secret lives
only in an HttpOnly cookie (the API sets it); the database keeps its SHA-256 and the token it stands
for (``browser_sessions``, migration 0026).

Every request through a session checks the token again (``tokens.checked_principal``), so revoking or
expiring the token, suspending its person or taking the role away ends every session it opened at the
next request; signing out ends one session. A session lasts at most ``LIFETIME`` and never past its
token's expiry.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from fabguard.domain.errors import Unauthorized
from fabguard.domain.ratelimit import EventAllowance
from fabguard.service.access import tokens
from fabguard.service.core.instance import Instance
from fabguard.store.models import ApiToken
from fabguard.store.people_models import Person
from fabguard.store.session_models import BrowserSession

PREFIX = "fgs_"
LIFETIME = timedelta(hours=12)
COOKIE = "fabguard_session"
FORGET_AFTER = timedelta(days=7)

log = logging.getLogger(__name__)


def open_session(
    inst: Instance, token: str | None, *, route: str, anonymous: EventAllowance | None = None
) -> tuple[str, tokens.Principal, datetime]:
    """A new session for the holder of ``token`` (refused and recorded as ``authenticate_token`` does):
    its secret (for the cookie), its principal and when it ends."""
    p = tokens.authenticate_token(inst, token, route=route, anonymous=anonymous)
    secret = PREFIX + secrets.token_urlsafe(32)
    now = inst.clock()
    ends = now + LIFETIME if p.expires_at is None else min(now + LIFETIME, p.expires_at)
    with inst.db.transaction() as s:
        # Sessions long over are forgotten as new ones open (through the index on expires_at).
        s.execute(
            delete(BrowserSession)
            .where(BrowserSession.expires_at < now - FORGET_AFTER)
            .execution_options(synchronize_session=False)
        )
        s.add(BrowserSession(secret_sha256=tokens.hash_token(secret), token_id=p.id, created_at=now, expires_at=ends))
    log.info("opened a browser session for token %s until %s", p.id, ends.isoformat())
    return secret, p, ends


def authenticate_session(
    inst: Instance, secret: str, *, route: str | None = None, anonymous: EventAllowance | None = None
) -> tokens.Principal:
    """The principal of an open session's token: 401 ``unauthorized`` (recorded) for an unknown, ended
    or expired session, or when its token no longer passes (revoked, expired, …)."""
    digest = tokens.hash_token(secret) if secret.startswith(PREFIX) and len(secret) <= 100 else ""
    with inst.db.read() as s:
        found = s.execute(
            select(BrowserSession, ApiToken, Person)
            .join(ApiToken, ApiToken.id == BrowserSession.token_id)
            .join(Person, Person.id == ApiToken.person_id)
            .where(BrowserSession.secret_sha256 == digest)
        ).one_or_none()
    if found is None or not hmac.compare_digest(found[0].secret_sha256, digest):
        refusal = Unauthorized("the browser session is unknown; sign in again")
        raise tokens.refused(inst, refusal, route, "an unknown browser session", allowance=anonymous)
    session, row, person = found
    if session.ended_at is not None or session.expires_at <= inst.clock():
        refusal = Unauthorized("the browser session has ended; sign in again")
        raise tokens.refused(inst, refusal, route, "an ended browser session", actor=f"token:{row.id} (session ended)")
    return tokens.checked_principal(inst, row, person, route)


def end_session(inst: Instance, secret: str) -> bool:
    """Sign out: end the session (True if it was open)."""
    if not secret.startswith(PREFIX):
        return False
    with inst.db.transaction() as s:
        done = s.execute(
            update(BrowserSession)
            .where(BrowserSession.secret_sha256 == tokens.hash_token(secret), BrowserSession.ended_at.is_(None))
            .values(ended_at=inst.clock())
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]
