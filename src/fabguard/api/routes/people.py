"""People (admin): who holds tokens, with which roles; dual control compares them (docs/roles.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from fabguard.api.deps import Admin, Inst, Reader
from fabguard.api.responses.people import Person, PersonChange, PersonWithTokens
from fabguard.api.schemas import PersonIn, RoleGrantIn, SuspendIn
from fabguard.service.access import people
from fabguard.service.approvals import person_acts, requests

router = APIRouter(tags=["people"])

PersonRef = Annotated[str, Path(max_length=128, description="The person's id or name")]
_PENDING: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Approver or admin waits for a second person: pending_approval is the request",
        "model": PersonChange,
    }
}


def _answer(person: people.PersonView, pending: requests.ApprovalView | None, status: int) -> Any:
    body = {**person.to_dict(), "pending_approval": pending.to_dict() if pending else None}
    return JSONResponse(body, status_code=202 if pending else status)


@router.get("/api/v1/people", response_model=list[Person])
def list_people(inst: Inst, _: Reader) -> list[dict[str, object]]:
    """Everyone who holds (or held) tokens, suspended people included."""
    return [p.to_dict() for p in people.list_people(inst)]


@router.post("/api/v1/people", status_code=201, responses=_PENDING, response_model=PersonChange)
def add_person(inst: Inst, body: PersonIn, p: Admin) -> Any:
    """Record a person with their roles (an operator with their site). Approver or admin, once two
    people have approving tokens, wait for a second person (202, the pending request)."""
    spec = people.person_spec(body.name, contact=body.contact, roles=body.roles, site_id=body.site_id)
    person, pending = person_acts.add_person(inst, spec, by=requests.Person.of(p))
    return _answer(person, pending, 201)


@router.get("/api/v1/people/{person_id}", response_model=PersonWithTokens)
def get_person(inst: Inst, person_id: PersonRef, _: Reader) -> dict[str, object]:
    """One person, with their tokens (never a secret)."""
    return {**people.get_person(inst, person_id).to_dict(), "tokens": people.tokens_of(inst, person_id)}


@router.post("/api/v1/people/{person_id}/grant", responses=_PENDING, response_model=PersonChange)
def grant_role(inst: Inst, person_id: PersonRef, body: RoleGrantIn, p: Admin) -> Any:
    """Grant a role (operator with its site). Approver or admin, once two people have approving
    tokens, wait for a second person (202, the pending request)."""
    roles = people.parse_roles([body.role])
    person, pending = person_acts.grant_roles(inst, person_id, roles, site_id=body.site_id, by=requests.Person.of(p))
    return _answer(person, pending, 200)


@router.post("/api/v1/people/{person_id}/revoke", response_model=Person)
def revoke_role(inst: Inst, person_id: PersonRef, body: RoleGrantIn, p: Admin) -> dict[str, object]:
    """Take a role away: their tokens of that role are refused from now on."""
    (role,) = people.parse_roles([body.role])
    return people.revoke_role(inst, person_id, role, actor=p.actor).to_dict()


@router.post("/api/v1/people/{person_id}/suspend", response_model=Person)
def suspend_person(inst: Inst, person_id: PersonRef, body: SuspendIn, p: Admin) -> dict[str, object]:
    """Suspend a person: every token of theirs is refused (401) from now on."""
    return people.suspend_person(inst, person_id, reason=body.reason, actor=p.actor).to_dict()
