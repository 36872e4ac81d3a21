"""API tokens: named, scoped to a role (and a site for operators), expiring, revocable; shown once and
stored as SHA-256 hashes (they carry 256 bits of entropy, so no slow hash is needed).

Every token belongs to a person (``service/access/people.py``) and carries only a role that person holds; a
suspended person's tokens, and a token whose role its person no longer holds, are refused."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from fabguard.domain.ratelimit import EventAllowance
from fabguard.domain.values import Role, SiteId
from fabguard.service.access import people
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import ApiToken, Site
from fabguard.store.people_models import Person

TOKEN_PREFIX = "fgt_"
# The event kind of a refused bearer token (fixture certificates' refusals are ``request.refused``).
REFUSED = "auth.refused"
DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=365)
# A metrics token only reads /metrics; a scrape credential that expired would silence the alerts watching it.
METRICS_MAX_LIFETIME = timedelta(days=5 * 366)
# The roles whose token must name a site (and only these may).
SITE_ROLES = frozenset({Role.OPERATOR})

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a token's id, name, role, (for an operator) its one site, and its person."""

    id: str
    name: str
    role: Role
    site_id: str | None = None
    expires_at: datetime | None = None
    person_id: str | None = None
    person_name: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.id})"

    def require(self, *roles: Role) -> None:
        """Refuse (403 forbidden) unless the token holds one of ``roles``; admin passes every check."""
        if self.role not in roles and self.role is not Role.ADMIN:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; your token has {self.role.value}")

    def sees_site(self, site_id: str) -> bool:
        """Whether this principal may read a site's orders and figures (an operator: only its own)."""
        return self.role not in SITE_ROLES or self.site_id == site_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _lifetime(expires_in: timedelta | None, role: Role) -> timedelta:
    lifetime = DEFAULT_LIFETIME if expires_in is None else expires_in
    longest = METRICS_MAX_LIFETIME if role is Role.METRICS else MAX_LIFETIME
    if not timedelta(minutes=1) <= lifetime <= longest:
        raise InvalidRequest(
            f"a {role.value} token lives between 1 minute and {longest.days} days (default {DEFAULT_LIFETIME.days})",
            code="token_expiry_invalid",
        )
    return lifetime


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """A token's checked name, role, site and lifetime, before it is made."""

    name: str
    role: Role
    site_id: str | None
    lifetime: timedelta

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role.value,
            "site_id": self.site_id,
            "lifetime_seconds": int(self.lifetime.total_seconds()),
        }


def token_spec(
    name: str, role: Role | str, *, site_id: SiteId | None = None, expires_in: timedelta | None = None
) -> TokenSpec:
    """Check what a token would be: a known role, a printable name, a site for an operator only, a
    lifetime from 1 minute to 365 days (a metrics token's to 1830 days; default 90)."""
    try:
        role = Role(role)
    except ValueError:
        raise InvalidRequest(f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}") from None
    if not name or len(name) > 128 or not name.isprintable():
        raise InvalidRequest("a token name must be 1-128 printable characters")
    if role in SITE_ROLES and site_id is None:
        raise InvalidRequest(f"a {role.value} token must name its site", code="token_site_invalid")
    if role not in SITE_ROLES and site_id is not None:
        raise InvalidRequest(
            f"a {role.value} token is not scoped to a site; leave the site out", code="token_site_invalid"
        )
    return TokenSpec(name, role, str(site_id) if site_id is not None else None, _lifetime(expires_in, role))


def new_secret() -> str:
    """A fresh token secret (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_holder(person: Person, spec: TokenSpec) -> None:
    """Refuse a token ``person`` may not hold: suspended, or a role they do not hold (an operator
    token of an operator: at their site)."""
    if person.state != people.ACTIVE:
        raise Conflict(f"{person.name} is suspended: no token is made for them", code="person_suspended")
    if not people.holds(person, spec.role):
        raise Conflict(
            f"{person.name} does not hold the role {spec.role.value}; grant it first (fabguard person grant)",
            code="person_lacks_role",
        )
    if spec.role is Role.OPERATOR and Role.OPERATOR in people.roles_of(person) and spec.site_id != person.site_id:
        raise InvalidRequest(
            f"{person.name} is an operator at {person.site_id}: their operator token is for that site",
            code="token_site_invalid",
        )


def insert_token(
    s: Session,
    spec: TokenSpec,
    secret_sha256: str,
    *,
    person_id: str,
    made_by: str | None,
    now: datetime,
    actor: str,
    detail: dict[str, object] | None = None,
) -> Principal:
    """Store the token of person ``person_id`` whose secret hashes to ``secret_sha256``, in the caller's
    transaction; ``made_by`` is the person who got the secret (None for the local operator)."""
    if spec.site_id is not None and s.get(Site, spec.site_id) is None:
        raise NotFound(f"no site {spec.site_id!r}", code="site_not_found")
    person = people.find(s, person_id, lock=True)
    check_holder(person, spec)
    if spec.role in people.APPROVING and person.approving_since is None:
        person.approving_since = now
    token_id = secrets.token_hex(8)
    expires_at = now + spec.lifetime
    s.add(
        ApiToken(
            id=token_id,
            name=spec.name,
            role=spec.role.value,
            token_hash=secret_sha256,
            created_at=now,
            site_id=spec.site_id,
            expires_at=expires_at,
            person_id=person.id,
            made_by_person=made_by,
        )
    )
    append_event(
        s,
        "token.created",
        at=now,
        actor=actor,
        detail={
            "token_id": token_id,
            "name": spec.name,
            "role": spec.role.value,
            "site_id": spec.site_id,
            "expires_at": expires_at.isoformat(),
            "person_id": person.id,
            "person": person.name,
            "made_by_person": made_by,
            **(detail or {}),
        },
    )
    return Principal(token_id, spec.name, spec.role, spec.site_id, expires_at, person.id, person.name)


def create_token(
    inst: Instance,
    *,
    name: str,
    role: Role | str,
    actor: str,
    site_id: SiteId | None = None,
    expires_in: timedelta | None = None,
    person: str | None = None,
    made_by: str | None = None,
) -> tuple[Principal, str]:
    """Make a token of ``person`` (an id or name) and return it in clear text: the only time it exists
    outside its holder's hands. ``made_by`` is the person of the caller's token (None for the local
    operator).

    An operator token must name an existing site; no other role may name one. The token expires
    after ``expires_in`` (default 90 days, at most 365). Through the API an admin token, and an
    approving token for someone else, need a second person (``api/routes/tokens.py``); this function
    is the act itself. Without ``person`` (the local operator's way, never the API's) the token is the
    person's named ``name``, who is recorded with the token's role if there is no such person yet:
    the local operator holds the instance's keys and database, which no second signature binds."""
    spec = token_spec(name, role, site_id=site_id, expires_in=expires_in)
    token = new_secret()
    now = inst.clock()
    with inst.db.transaction() as s:
        if person is None:
            holder = s.execute(select(Person).where(Person.name == spec.name)).scalar_one_or_none()
            if holder is None:
                owned = people.person_spec(spec.name, roles={spec.role}, site_id=spec.site_id)
                holder = people.insert_person(s, owned, now=now, actor=actor, detail={"for_token": True})
            person = holder.id
        made = insert_token(s, spec, hash_token(token), person_id=person, made_by=made_by, now=now, actor=actor)
    return made, token


def authenticate_token(
    inst: Instance, token: str | None, *, route: str | None = None, anonymous: EventAllowance | None = None
) -> Principal:
    """The principal holding ``token``; unknown, revoked and expired tokens are 401 ``unauthorized``.

    Each refusal is an ``auth.refused`` event naming the caller without the secret: ``token:<id>
    (revoked)`` or ``(expired)`` for a known token, ``anonymous`` for none, a malformed or an unknown one.
    With ``anonymous`` (the API's), anonymous refusals are recorded only as fast as it allows, each
    written one counting those left out before it (``unrecorded_before``)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        what = "no API token" if not token else "a malformed API token"
        refusal = Unauthorized("a valid API token is needed (Authorization: Bearer fgt_...)")
        raise refused(inst, refusal, route, what, allowance=anonymous)
    digest = hash_token(token)
    with inst.db.read() as s:
        found = s.execute(
            select(ApiToken, Person).join(Person, Person.id == ApiToken.person_id).where(ApiToken.token_hash == digest)
        ).one_or_none()
    row, person = found if found is not None else (None, None)
    if row is None or person is None or not hmac.compare_digest(row.token_hash, digest):
        log.warning("refused an unknown API token")
        raise refused(
            inst, Unauthorized("the API token is unknown"), route, "an unknown API token", allowance=anonymous
        )
    return checked_principal(inst, row, person, route)


def checked_principal(inst: Instance, row: ApiToken, person: Person, route: str | None) -> Principal:
    """The principal of a known token (found by its secret, or through a browser session it opened):
    401 ``unauthorized``, recorded, when it is revoked or expired, or its person suspended or no longer
    holding its role."""
    if row.revoked_at is not None:
        log.warning("refused revoked API token %s", row.id)
        refusal = Unauthorized(f"the API token {row.id} was revoked at {row.revoked_at.isoformat(timespec='seconds')}")
        raise refused(inst, refusal, route, "a revoked API token", actor=f"token:{row.id} (revoked)")
    if row.expires_at is not None and row.expires_at <= inst.clock():
        log.warning("refused expired API token %s", row.id)
        refusal = Unauthorized(
            f"the API token {row.id} expired at {row.expires_at.isoformat(timespec='seconds')}; ask an admin for a new one"
        )
        raise refused(inst, refusal, route, "an expired API token", actor=f"token:{row.id} (expired)")
    if person.state != people.ACTIVE:
        log.warning("refused API token %s of suspended person %s", row.id, person.id)
        refusal = Unauthorized(f"the API token {row.id} is {person.name}'s, who is suspended")
        raise refused(inst, refusal, route, "a suspended person's API token", actor=f"token:{row.id} (suspended)")
    if not people.holds(person, Role(row.role)):
        log.warning("refused API token %s: person %s no longer holds %s", row.id, person.id, row.role)
        refusal = Unauthorized(f"the API token {row.id} carries {row.role}, which {person.name} no longer holds")
        raise refused(inst, refusal, route, "a token of a role taken away", actor=f"token:{row.id} (role revoked)")
    return Principal(row.id, row.name, Role(row.role), row.site_id, row.expires_at, person.id, person.name)


def refused(
    inst: Instance,
    refusal: Unauthorized,
    route: str | None,
    presented: str,
    *,
    actor: str | None = None,
    allowance: EventAllowance | None = None,
) -> Unauthorized:
    detail: dict[str, object] = {"presented": presented}
    if route is not None:
        detail["route"] = route
    if allowance is not None:
        left_out = allowance.admit(time.monotonic())
        if left_out is None:
            return refusal
        if left_out:
            detail["unrecorded_before"] = left_out
    record_refusal(inst, REFUSED, refusal, actor=actor, detail=detail)
    return refusal


def require_role(inst: Instance, p: Principal, *roles: Role, route: str | None = None) -> None:
    """``p.require(*roles)``; a refusal (403 ``forbidden``) is an ``auth.refused`` event naming the token
    and its role. Every one is recorded: the caller is known, and its token can be revoked."""
    try:
        p.require(*roles)
    except Forbidden as exc:
        log.warning("refused token %s (role %s) on %s", p.id, p.role.value, route or "the command line")
        detail: dict[str, object] = {"role": p.role.value, "needs": [r.value for r in roles]}
        if route is not None:
            detail["route"] = route
        record_refusal(inst, REFUSED, exc, actor=p.actor, detail=detail)
        raise


def list_tokens(inst: Instance) -> list[ApiToken]:
    with inst.db.read() as s:
        return list(s.execute(select(ApiToken).order_by(ApiToken.created_at)).scalars())


def token_dict(t: ApiToken) -> dict[str, object]:
    """A token as ``GET /api/v1/tokens`` and ``fabguard token list --json`` show it: never its secret."""
    return {
        "id": t.id,
        "name": t.name,
        "person_id": t.person_id,
        "role": t.role,
        "site_id": t.site_id,
        "created_at": t.created_at.isoformat(),
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        "made_by_person": t.made_by_person,
    }


def revoke_token(inst: Instance, token_id: str, *, actor: str) -> dict[str, object]:
    """Revoke a token (refused from now on); the token as :func:`token_dict` shows it. Revoking a revoked
    token changes nothing (its first revocation stands), so a retry is safe."""
    now = inst.clock()
    with inst.db.transaction() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"no token {token_id[:80]!r}", code="token_not_found")
        if row.revoked_at is not None:
            return token_dict(row)
        row.revoked_at = now
        append_event(s, "token.revoked", at=now, actor=actor, detail={"token_id": token_id})
        return token_dict(row)
