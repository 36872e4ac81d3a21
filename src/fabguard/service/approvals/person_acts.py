"""Adding people and granting them roles: approver and admin through a second person once dual control
is in force (``people.dual_control_in_force``), every other role at once.

Before then (the bootstrap: ``fabguard init`` made the first admin person, who brings in the second)
and for the local operator (the command line without a token, who holds the instance's keys and
database anyway) a grant is one person's act; its ``person.created`` / ``person.granted`` event says
so (``"second_person": false`` and why), so the ledger shows how every approving person came in.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from fabguard.domain.values import Role
from fabguard.service.access import people, tokens
from fabguard.service.approvals import requests
from fabguard.service.approvals.acts import ADMIN_TOKEN, APPROVER_TOKEN, PERSON_GRANT
from fabguard.service.core.instance import Instance

__all__ = ["add_person", "grant_roles", "issue_token"]


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
    parameters: dict[str, object] = {"roles": sorted(r.value for r in roles), "site_id": None}
    return requests.request_in(inst, s, PERSON_GRANT, person_id, parameters, by=by)


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
            kind = ADMIN_TOKEN if spec.role is Role.ADMIN else APPROVER_TOKEN
            parameters = {**spec.to_dict(), "person_id": holder.id}
            hashed = tokens.hash_token(secret)
            return requests.request_in(inst, s, kind, spec.name, parameters, by=by, secret_sha256=hashed), secret
        made = tokens.insert_token(
            s, spec, tokens.hash_token(secret), person_id=holder.id, made_by=by.person_id, now=now, actor=by.actor
        )
        return made, secret
