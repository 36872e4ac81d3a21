"""Adding people and granting them roles: approver and admin through a second person once dual control
is in force (``people.dual_control_in_force``), every other role at once.

Before then (the bootstrap: ``fabguard init`` made the first admin person, who brings in the second)
and for the local operator (the command line without a token, who holds the instance's keys and
database anyway) a grant is one person's act; its ``person.created`` / ``person.granted`` event says
so (``"second_person": false`` and why), so the ledger shows how every approving person came in.

The acts under dual control are here too: issuing an admin token (or an approver token for someone
else) and granting a person approver or admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.values import Role
from fabguard.service.access import people, tokens
from fabguard.service.approvals import requests
from fabguard.service.approvals.registry import Approved, register
from fabguard.service.core.instance import Instance
from fabguard.store.people_models import Person

__all__ = [
    "ADMIN_TOKEN",
    "APPROVER_TOKEN",
    "PERSON_GRANT",
    "AdminToken",
    "ApproverToken",
    "RoleGrant",
    "TokenGrant",
    "add_person",
    "grant_roles",
    "issue_token",
]

ADMIN_TOKEN = "token.admin"
APPROVER_TOKEN = "token.approver"
PERSON_GRANT = "person.grant"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token to make (its secret's hash is the request's) for a person; ``person_id`` None in a request
    made before people existed (migration 0017): the token is then the person's named as the token."""

    spec: tokens.TokenSpec
    person_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), **({"person_id": self.person_id} if self.person_id is not None else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        spec = tokens.TokenSpec(
            name=str(data["name"]),
            role=Role(data["role"]),
            site_id=None,
            lifetime=timedelta(seconds=int(data["lifetime_seconds"])),
        )
        return cls(spec, str(data["person_id"]) if "person_id" in data else None)


@dataclass(frozen=True, slots=True)
class AdminToken(TokenGrant):
    """An admin token: always two people's."""


@dataclass(frozen=True, slots=True)
class ApproverToken(TokenGrant):
    """An approver token for someone else, once dual control is in force."""


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """Approver or admin for a person (the request's target)."""

    roles: frozenset[Role]
    site_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"roles": sorted(r.value for r in self.roles), "site_id": self.site_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoleGrant:
        return cls(people.parse_roles(data["roles"]), data.get("site_id"))


def _token_holder(s: Session, p: TokenGrant) -> Person:
    """The person the token is for. A request made before people existed (migration 0017) names none:
    its token is the person's named as the token, as the migration maps every earlier token."""
    if p.person_id is not None:
        return people.find(s, p.person_id)
    named = s.execute(select(Person).where(Person.name == p.spec.name)).scalar_one_or_none()
    if named is not None:
        return named
    spec = people.person_spec(p.spec.name, roles={p.spec.role})
    return Person(id="", name=spec.name, contact="", roles=people.roles_text(spec.roles), state=people.ACTIVE)


def _token_is_possible(inst: Instance, s: Session, target: str, p: TokenGrant) -> None:
    del inst, target
    tokens.check_holder(_token_holder(s, p), p.spec)


def _issue_token(inst: Instance, s: Session, a: Approved[TokenGrant]) -> dict[str, object]:
    del inst
    if a.secret_sha256 is None:
        raise ValueError(f"approval {a.id} carries no token hash")
    holder = _token_holder(s, a.parameters)
    if not holder.id:  # an admin token asked for before migration 0017, for a name no person has
        spec = people.person_spec(holder.name, roles=people.roles_of(holder))
        holder = people.insert_person(s, spec, now=a.now, actor=a.actor, detail=a.detail)
    # The requester got the secret when asking: they made the token.
    made = tokens.insert_token(
        s,
        a.parameters.spec,
        a.secret_sha256,
        person_id=holder.id,
        made_by=a.requester_person,
        now=a.now,
        actor=a.actor,
        detail=a.detail,
    )
    return {
        "token_id": made.id,
        "person_id": holder.id,
        "expires_at": made.expires_at.isoformat() if made.expires_at else None,
    }


def _grant_is_possible(inst: Instance, s: Session, target: str, p: RoleGrant) -> None:
    del inst
    people.check_grant(s, people.find(s, target), p.roles, p.site_id)


def _grant_roles(inst: Instance, s: Session, a: Approved[RoleGrant]) -> dict[str, object]:
    del inst
    row = people.find(s, a.target, lock=True)
    p = a.parameters
    people.add_roles(s, row, p.roles, site_id=p.site_id, now=a.now, actor=a.actor, detail=a.detail)
    return {"person_id": row.id, "roles": [r.value for r in people.view(row).roles]}


register(ADMIN_TOKEN, AdminToken, summary="issue an admin token", check=_token_is_possible, apply=_issue_token)
register(
    APPROVER_TOKEN,
    ApproverToken,
    summary="issue an approver token for someone else",
    check=_token_is_possible,
    apply=_issue_token,
)
register(
    PERSON_GRANT,
    RoleGrant,
    summary="grant a person approver or admin",
    check=_grant_is_possible,
    apply=_grant_roles,
)


def _alone(s: Session, approving: frozenset[Role], by: requests.Person) -> dict[str, object] | None:
    """None if granting ``approving`` needs a second person; else why it does not (the event's detail)."""
    if not approving:
        return {}
    if by.token_id is None:
        return {"second_person": False, "why": "the local operator (no token)"}
    if not people.dual_control_in_force(s):
        return {"second_person": False, "why": "bootstrap: fewer than two people have had an approving token"}
    return None


def _pending(
    inst: Instance, s: Session, person_id: str, roles: frozenset[Role], by: requests.Person
) -> requests.ApprovalView:
    return requests.request_in(inst, s, person_id, RoleGrant(roles), by=by)


def add_person(
    inst: Instance, spec: people.PersonSpec, *, by: requests.Person
) -> tuple[people.PersonView, requests.ApprovalView | None]:
    """Record a person. Approver or admin among their roles, once dual control is in force: the person
    is recorded with the other roles, and those two wait for a second person (the pending request)."""
    approving = spec.roles & people.APPROVING
    now = inst.clock()
    with inst.db.transaction() as s:
        alone = _alone(s, approving, by)
        now_roles = spec.roles if alone is not None else spec.roles - approving
        row = people.insert_person(s, replace(spec, roles=now_roles), now=now, actor=by.actor, detail=alone)
        pending = _pending(inst, s, row.id, approving, by) if alone is None else None
        return people.view(row), pending


def grant_roles(
    inst: Instance, ref: str, roles: frozenset[Role], *, site_id: str | None = None, by: requests.Person
) -> tuple[people.PersonView, requests.ApprovalView | None]:
    """Grant a person ``roles`` (an operator role with its site). Approver or admin, once dual control
    is in force, wait for a second person (the pending request); the others are granted at once."""
    now = inst.clock()
    with inst.db.transaction() as s:
        row = people.find(s, ref, lock=True)
        people.check_grant(s, row, roles, site_id)
        new = roles - people.roles_of(row)
        approving = new & people.APPROVING
        alone = _alone(s, approving, by)
        at_once = new if alone is not None else new - approving
        if at_once:
            people.add_roles(
                s,
                row,
                at_once,
                site_id=site_id if Role.OPERATOR in at_once else None,
                now=now,
                actor=by.actor,
                detail=alone,
            )
        pending = _pending(inst, s, row.id, approving, by) if alone is None else None
        return people.view(row), pending


def issue_token(
    inst: Instance, spec: tokens.TokenSpec, person: str, *, by: requests.Person
) -> tuple[tokens.Principal | requests.ApprovalView, str]:
    """A token of ``person`` carrying one of their roles, made by ``by`` (who sees its secret): the
    token, or, for an admin token, and for an approver token for someone else once dual control is
    in force, the pending request whose approval makes the secret work. The secret is returned either
    way, once."""
    secret = tokens.new_secret()
    now = inst.clock()
    with inst.db.transaction() as s:
        holder = people.find(s, person, lock=True)
        tokens.check_holder(holder, spec)
        for_other = spec.role in people.APPROVING and holder.id != by.person_id
        if spec.role is Role.ADMIN or (for_other and _alone(s, frozenset({spec.role}), by) is None):
            grant = AdminToken(spec, holder.id) if spec.role is Role.ADMIN else ApproverToken(spec, holder.id)
            hashed = tokens.hash_token(secret)
            return requests.request_in(inst, s, spec.name, grant, by=by, secret_sha256=hashed), secret
        made = tokens.insert_token(
            s, spec, tokens.hash_token(secret), person_id=holder.id, made_by=by.person_id, now=now, actor=by.actor
        )
        return made, secret
