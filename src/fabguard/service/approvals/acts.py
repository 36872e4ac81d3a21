"""What each kind of dual-control request does: checked when asked for, applied when a second person
approves it, in the approval's own transaction (so an act runs exactly once, or not at all).

The acts: issuing an admin token (or an approver token for someone else), granting a person approver
or admin, resuming a suspended order, and creating (an issuing CA, a Matter PAI), importing (an
offline root's certificate), rotating and revoking a CA. A new CA's key is made
when the request is approved, never before. The mechanism (who may approve, expiry, the ledger) is
``service/approvals/requests.py``; quota raises (``service/catalog/orders.py``) and firmware releases
(``service/firmware/release_lifecycle.py``) keep their own (docs/roles.md says why).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, NotFound
from fabguard.domain.values import OrderId, OrderState, Role
from fabguard.service.access import people, tokens
from fabguard.service.agent import quota_leases
from fabguard.service.authority import authorities, matter_authorities, revocation
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.store.models import Order
from fabguard.store.people_models import Person


@dataclass(frozen=True, slots=True)
class Approved:
    """An approved request, as its act sees it."""

    id: int
    target: str
    parameters: Mapping[str, Any]
    secret_sha256: str | None
    now: datetime
    actor: str  # the approver
    requested_by: str
    requester_person: str | None = None

    @property
    def detail(self) -> dict[str, object]:
        """What the act's own event adds: which request, and who asked for it."""
        return {"approval_id": self.id, "requested_by": self.requested_by}


@dataclass(frozen=True, slots=True)
class Act:
    """One kind of act under dual control."""

    summary: str
    # Refuses a request that could not be carried out (run when it is made, in its transaction).
    check: Callable[[Instance, Session, str, Mapping[str, Any]], None]
    # Carries it out in the approval's transaction; returns what it did (kept on the request).
    apply: Callable[[Instance, Session, Approved], dict[str, object]]
    # What follows once the approval is committed (re-signing a CRL), if anything.
    after: Callable[[Instance], None] | None = None


def _token_spec(p: Mapping[str, Any]) -> tokens.TokenSpec:
    return tokens.TokenSpec(
        name=str(p["name"]),
        role=Role(p["role"]),
        site_id=None,
        lifetime=timedelta(seconds=int(p["lifetime_seconds"])),
    )


def _token_holder(s: Session, p: Mapping[str, Any]) -> Person:
    """The person the token is for. A request made before people existed (migration 0017) names none:
    its token is the person's named as the token, as the migration maps every earlier token."""
    if "person_id" in p:
        return people.find(s, str(p["person_id"]))
    named = s.execute(select(Person).where(Person.name == str(p["name"]))).scalar_one_or_none()
    if named is not None:
        return named
    spec = people.person_spec(str(p["name"]), roles={Role(p["role"])})
    return Person(id="", name=spec.name, contact="", roles=people.roles_text(spec.roles), state=people.ACTIVE)


def _token_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    del inst, target
    tokens.check_holder(_token_holder(s, p), _token_spec(p))


def _issue_token(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
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
        _token_spec(a.parameters),
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


def _grant_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    del inst
    people.check_grant(s, people.find(s, target), people.parse_roles(p["roles"]), p.get("site_id"))


def _grant_roles(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    del inst
    row = people.find(s, a.target, lock=True)
    roles = people.parse_roles(a.parameters["roles"])
    people.add_roles(s, row, roles, site_id=a.parameters.get("site_id"), now=a.now, actor=a.actor, detail=a.detail)
    return {"person_id": row.id, "roles": [r.value for r in people.view(row).roles]}


def _order_is_suspended(inst: Instance, s: Session, target: str, parameters: Mapping[str, Any]) -> None:
    del inst, parameters
    order = s.get(Order, target)
    if order is None:
        raise NotFound(f"no order {target!r}", code="order_not_found")
    if order.state != OrderState.SUSPENDED.value:
        raise Conflict(f"order {target} is {order.state}, not suspended", code="order_not_suspended")


def _activate_order(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    del inst
    old = orders.change_order_state(s, a.target, OrderState.ACTIVE, now=a.now, actor=a.actor, detail=a.detail)
    return {"order_id": a.target, "from": old, "to": OrderState.ACTIVE.value}


def _new_ca_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    authorities.check_new_ca(s, target, site_id=p["site_id"], product_id=p["product_id"])
    inst.cas.issuer("root", s)  # the root must sign it: fail now, not once a second person approves


def _create_issuing_ca(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    p = a.parameters
    return authorities.create_issuing_ca_in(
        s, inst, a.target, site_id=p["site_id"], product_id=p["product_id"], at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _new_pai_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    del inst
    matter_authorities.check_matter_pai(s, target, product_id=p["product_id"], vid=p["vid"], pid=p["pid"])


def _create_matter_pai(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    p = a.parameters
    return matter_authorities.create_matter_pai_in(
        s, inst, a.target, product_id=p["product_id"], vid=p["vid"], pid=p["pid"], at=a.now, actor=a.actor,
        detail=a.detail,
    ).to_dict()  # fmt: skip


def _import_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    authorities.check_import(s, inst, target, str(p["certificate"]).encode())


def _import_certificate(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    pem = str(a.parameters["certificate"]).encode()
    return authorities.import_certificate_in(s, inst, a.target, pem, at=a.now, actor=a.actor, detail=a.detail).to_dict()


def _rotation_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    authorities.check_rotation(s, target, new_name=p["new_name"])
    inst.cas.issuer("root", s)


def _rotate_ca(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    new_name = a.parameters["new_name"]
    return authorities.rotate_issuing_ca_in(
        s, inst, a.target, new_name=new_name, at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _revocation_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    del inst
    authorities.check_revocation(s, target, reason_code=p["reason"])


def _revoke_ca(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    del inst
    p = a.parameters
    return authorities.revoke_ca_in(
        s, a.target, reason_code=p["reason"], note=p["note"], at=a.now, actor=a.actor, detail=a.detail
    ).to_dict()


def _lease_terms(p: Mapping[str, Any]) -> tuple[int, timedelta, quota_leases.AgentRequest]:
    return (
        int(p["units"]),
        timedelta(seconds=int(p["expires_in_seconds"])),
        quota_leases.parse_agent_request(p["request"]),
    )


def _lease_is_possible(inst: Instance, s: Session, target: str, p: Mapping[str, Any]) -> None:
    units, expires_in, request = _lease_terms(p)
    quota_leases.check_lease(inst, s, OrderId.named(target), units=units, expires_in=expires_in, request=request)
    inst.cas.issuer("root", s)  # the root signs the agent's CA: fail now, not once a second person approves


def _issue_lease(inst: Instance, s: Session, a: Approved) -> dict[str, object]:
    units, expires_in, request = _lease_terms(a.parameters)
    bundle = quota_leases.issue_lease_in(
        inst,
        s,
        OrderId.named(a.target),
        units=units,
        expires_in=expires_in,
        request=request,
        actor=a.actor,
        detail=a.detail,
    )
    terms = bundle["lease"]
    assert isinstance(terms, dict)
    return {k: terms[k] for k in ("lease_id", "order_id", "site_id", "units", "not_after")}


def _resign_root_crl(inst: Instance) -> None:
    revocation.refresh_crl(inst, "root")


ADMIN_TOKEN = "token.admin"
APPROVER_TOKEN = "token.approver"
PERSON_GRANT = "person.grant"
ORDER_ACTIVATION = "order.activate"
CA_CREATION = "ca.create"
MATTER_PAI_CREATION = "ca.create_matter_pai"
CA_IMPORT = "ca.import"
CA_ROTATION = "ca.rotate"
CA_REVOCATION = "ca.revoke"
LEASE_ISSUE = "lease.issue"

ACTS: Mapping[str, Act] = {
    ADMIN_TOKEN: Act("issue an admin token", _token_is_possible, _issue_token),
    APPROVER_TOKEN: Act("issue an approver token for someone else", _token_is_possible, _issue_token),
    PERSON_GRANT: Act("grant a person approver or admin", _grant_is_possible, _grant_roles),
    ORDER_ACTIVATION: Act("resume a suspended order", _order_is_suspended, _activate_order),
    CA_CREATION: Act("create an issuing CA", _new_ca_is_possible, _create_issuing_ca),
    MATTER_PAI_CREATION: Act("create a Matter PAI", _new_pai_is_possible, _create_matter_pai),
    CA_IMPORT: Act("import a CA certificate", _import_is_possible, _import_certificate),
    CA_ROTATION: Act("rotate an issuing CA", _rotation_is_possible, _rotate_ca),
    CA_REVOCATION: Act("revoke a CA", _revocation_is_possible, _revoke_ca, after=_resign_root_crl),
    LEASE_ISSUE: Act("issue a quota lease to a site agent (its CA under the root)", _lease_is_possible, _issue_lease),
}

__all__ = [
    "ACTS",
    "ADMIN_TOKEN",
    "APPROVER_TOKEN",
    "CA_CREATION",
    "CA_IMPORT",
    "CA_REVOCATION",
    "CA_ROTATION",
    "LEASE_ISSUE",
    "MATTER_PAI_CREATION",
    "ORDER_ACTIVATION",
    "PERSON_GRANT",
    "Act",
    "Approved",
]
