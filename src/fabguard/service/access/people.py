"""People: every API token belongs to one, and dual control compares them, never tokens or names.

A person has a unique name, a contact, the roles they hold (a token carries one of them: admin holds
every role), a site when they hold the operator role, and a state (a suspended person's tokens are
refused). Whether two acts are one person's is :func:`second_person_refusal`: the same person record,
whichever token or name, or the person who made (and so saw the secret of) the requester's token.

Granting approver or admin is two people's act once :func:`dual_control_in_force` (two people have had
a token carrying one of those roles; ``service/approvals/person_acts.py`` routes it through the approvals). The
bootstrap, before then, is one person's act, recorded in the ledger (docs/roles.md).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.values import Role
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import ApiToken, Site
from fabguard.store.people_models import Person

ACTIVE = "active"
SUSPENDED = "suspended"
# The roles whose holder can give the second signature.
APPROVING = frozenset({Role.ADMIN, Role.APPROVER})
# An actor string a token acts under: ``name (token id)`` (tokens.Principal.actor).
_TOKEN_ACTOR = re.compile(r" \(([0-9a-f]{16})\)\Z")
_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class PersonView:
    id: str
    name: str
    contact: str
    roles: tuple[Role, ...]
    site_id: str | None
    state: str
    created_at: datetime
    created_by: str
    approving_since: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "contact": self.contact,
            "roles": [r.value for r in self.roles],
            "site_id": self.site_id,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "approving_since": self.approving_since.isoformat() if self.approving_since else None,
        }


def roles_text(roles: Iterable[Role]) -> str:
    """Roles as stored: comma-separated, in ``Role``'s order."""
    held = set(roles)
    return ",".join(r.value for r in Role if r in held)


def roles_of(row: Person) -> frozenset[Role]:
    return frozenset(Role(r) for r in row.roles.split(",") if r)


def holds(row: Person, role: Role) -> bool:
    """Whether a token of ``role`` may be this person's: a role they hold (admin holds every role)."""
    held = roles_of(row)
    return role in held or Role.ADMIN in held


def view(row: Person) -> PersonView:
    return PersonView(
        row.id,
        row.name,
        row.contact,
        tuple(r for r in Role if r in roles_of(row)),
        row.site_id,
        row.state,
        row.created_at,
        row.created_by,
        row.approving_since,
    )


@dataclass(frozen=True, slots=True)
class PersonSpec:
    """A person's checked name, contact, roles and site, before they are recorded."""

    name: str
    contact: str
    roles: frozenset[Role]
    site_id: str | None


def parse_roles(roles: Iterable[str | Role]) -> frozenset[Role]:
    found = set()
    for r in roles:
        try:
            found.add(Role(r))
        except ValueError:
            raise InvalidRequest(
                f"unknown role {r!r}; one of {', '.join(x.value for x in Role)}", code="person_invalid"
            ) from None
    return frozenset(found)


def person_spec(
    name: str, *, contact: str = "", roles: Iterable[str | Role] = (), site_id: str | None = None
) -> PersonSpec:
    """Check a person: a printable name (1-128), a printable contact (up to 200), known roles, and a
    site exactly when they hold the operator role."""
    if not name or len(name) > 128 or not name.isprintable() or name != name.strip():
        raise InvalidRequest("a person's name must be 1-128 printable characters", code="person_invalid")
    if _ID.fullmatch(name):  # people are found by id or name: a name must not read as an id
        raise InvalidRequest(f"{name!r} reads as a person's id; choose another name", code="person_invalid")
    if len(contact) > 200 or not contact.isprintable():
        raise InvalidRequest("a contact must be at most 200 printable characters", code="person_invalid")
    held = parse_roles(roles)
    _check_site(held, site_id)
    return PersonSpec(name, contact, held, site_id)


def _check_site(roles: frozenset[Role], site_id: str | None) -> None:
    if Role.OPERATOR in roles and site_id is None:
        raise InvalidRequest("an operator works at one site: name it", code="person_invalid")
    if Role.OPERATOR not in roles and site_id is not None:
        raise InvalidRequest("only an operator has a site; leave it out", code="person_invalid")


def find(s: Session, ref: str, *, lock: bool = False) -> Person:
    """The person whose id, else whose name, is ``ref`` (404 ``person_not_found``)."""
    row = s.get(Person, ref, with_for_update=lock) if len(ref) <= 32 else None
    if row is None and len(ref) <= 128:
        q = select(Person).where(Person.name == ref)
        row = s.execute(q.with_for_update() if lock else q).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no person {ref[:128]!r}", code="person_not_found")
    return row


def dual_control_in_force(s: Session) -> bool:
    """Whether granting approver or admin needs a second person: once two people have had a token
    carrying one of those roles (``approving_since`` is never cleared, so suspending or demoting one of
    them does not bring the one-person bootstrap back)."""
    count = s.execute(select(func.count()).select_from(Person).where(Person.approving_since.is_not(None))).scalar_one()
    return int(count) >= 2


def insert_person(
    s: Session, spec: PersonSpec, *, now: datetime, actor: str, detail: dict[str, object] | None = None
) -> Person:
    """Record a person (``person.created``) in the caller's transaction."""
    if spec.site_id is not None and s.get(Site, spec.site_id) is None:
        raise NotFound(f"no site {spec.site_id!r}", code="site_not_found")
    if s.execute(select(Person.id).where(Person.name == spec.name)).first() is not None:
        raise Conflict(f"there is already a person named {spec.name!r}", code="person_exists")
    row = Person(
        id=secrets.token_hex(8),
        name=spec.name,
        contact=spec.contact,
        roles=roles_text(spec.roles),
        site_id=spec.site_id,
        state=ACTIVE,
        created_at=now,
        created_by=actor,
    )
    s.add(row)
    s.flush()
    append_event(
        s,
        "person.created",
        at=now,
        actor=actor,
        detail={"person_id": row.id, "name": row.name, "roles": sorted(r.value for r in spec.roles),
                "site_id": row.site_id, **(detail or {})},
    )  # fmt: skip
    return row


def add_roles(
    s: Session,
    row: Person,
    roles: frozenset[Role],
    *,
    site_id: str | None,
    now: datetime,
    actor: str,
    detail: dict[str, object] | None = None,
) -> None:
    """Give ``row`` the ``roles`` (``person.granted``) in the caller's transaction; an operator role
    comes with its site."""
    check_grant(s, row, roles, site_id)
    row.roles = roles_text(roles_of(row) | roles)
    if Role.OPERATOR in roles:
        row.site_id = site_id
    append_event(
        s,
        "person.granted",
        at=now,
        actor=actor,
        detail={"person_id": row.id, "name": row.name, "roles": sorted(r.value for r in roles),
                "site_id": site_id, **(detail or {})},
    )  # fmt: skip


def check_grant(s: Session, row: Person, roles: frozenset[Role], site_id: str | None) -> None:
    """Refuse a grant that could not be carried out: a suspended person, roles held already, a bad site."""
    if row.state != ACTIVE:
        raise Conflict(f"{row.name} is suspended", code="person_suspended")
    if not roles:
        raise InvalidRequest("name at least one role to grant", code="person_invalid")
    if roles <= roles_of(row):
        raise Conflict(f"{row.name} already holds {roles_text(roles)}", code="person_has_role")
    _check_site(roles, site_id)
    if site_id is not None and s.get(Site, site_id) is None:
        raise NotFound(f"no site {site_id!r}", code="site_not_found")


def list_people(inst: Instance) -> list[PersonView]:
    with inst.db.read() as s:
        return [view(r) for r in s.execute(select(Person).order_by(Person.created_at, Person.name)).scalars()]


def get_person(inst: Instance, ref: str) -> PersonView:
    with inst.db.read() as s:
        return view(find(s, ref))


def tokens_of(inst: Instance, ref: str) -> list[dict[str, object]]:
    """A person's tokens, revoked and expired ones included (never their secrets)."""
    with inst.db.read() as s:
        row = find(s, ref)
        q = select(ApiToken).where(ApiToken.person_id == row.id).order_by(ApiToken.created_at, ApiToken.id)
        return [
            {
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "site_id": t.site_id,
                "created_at": t.created_at.isoformat(),
                "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                "made_by_person": t.made_by_person,
            }
            for t in s.execute(q).scalars()
        ]


def revoke_role(inst: Instance, ref: str, role: Role, *, actor: str) -> PersonView:
    """Take a role from a person (their tokens of that role stop working): one person's act, as it
    lowers what someone may do."""
    now = inst.clock()
    with inst.db.transaction() as s:
        row = find(s, ref, lock=True)
        if role not in roles_of(row):
            raise Conflict(f"{row.name} does not hold {role.value}", code="person_lacks_role")
        row.roles = roles_text(roles_of(row) - {role})
        if role is Role.OPERATOR:
            row.site_id = None
        append_event(
            s,
            "person.role_revoked",
            at=now,
            actor=actor,
            detail={"person_id": row.id, "name": row.name, "role": role.value},
        )
        return view(row)


def suspend_person(inst: Instance, ref: str, *, reason: str, actor: str) -> PersonView:
    """Suspend a person: every token of theirs is refused (401) from now on."""
    if not reason.strip() or len(reason) > 500 or not reason.isprintable():
        raise InvalidRequest("a suspension needs a reason of 1-500 printable characters", code="invalid_reason")
    now = inst.clock()
    with inst.db.transaction() as s:
        row = find(s, ref, lock=True)
        if row.state == SUSPENDED:
            raise Conflict(f"{row.name} is already suspended", code="person_suspended")
        row.state = SUSPENDED
        append_event(
            s, "person.suspended", at=now, actor=actor, detail={"person_id": row.id, "name": row.name, "reason": reason}
        )
        return view(row)


@dataclass(frozen=True, slots=True)
class Acting:
    """Who did one step of a dual-control act: the actor the ledger shows, the token (None for the local
    operator), the person behind it and the person who made that token (who has seen its secret)."""

    actor: str
    token_id: str | None = None
    person_id: str | None = None
    made_by: str | None = None


def acting(s: Session, actor: str, token_id: str | None = None) -> Acting:
    """``actor`` (``name (token id)`` for a token) resolved to its token's person and maker."""
    if token_id is None:
        found = _TOKEN_ACTOR.search(actor)
        token_id = found.group(1) if found else None
    token = s.get(ApiToken, token_id) if token_id else None
    if token is None:
        return Acting(actor)
    return Acting(actor, token.id, token.person_id, token.made_by_person)


def _name(actor: str) -> str:
    return actor.rsplit(" (", 1)[0] if actor.endswith(")") else actor


def second_person_refusal(requester: Acting, decider: Acting) -> str | None:
    """Why ``decider`` may not give the second signature on ``requester``'s act, as a refusal code, or
    None: ``same_approver`` for the requester's own token (or, for the local operator, the same name),
    ``same_person`` for another token of the requester's person, or a decider who made the requester's
    token. Token names are labels: two people whose tokens share a name are two people."""
    if requester.token_id is not None and requester.token_id == decider.token_id:
        return "same_approver"
    if requester.person_id is not None and decider.person_id is not None:
        if decider.person_id in (requester.person_id, requester.made_by):
            return "same_person"
        return None
    return "same_approver" if _name(requester.actor) == _name(decider.actor) else None
