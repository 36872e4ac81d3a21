"""Dual control: a dangerous act is first a pending request; a second, different person approves it
(and the act runs in that transaction, exactly once) or rejects it. A request expires after
``Limits.approval_hours``. Requester and approver are both in the ledger (``approval.requested``,
``approval.approved`` / ``approval.rejected``, and the act's own event names both).

"Different" means a different person (``service/access/people.py``): not the requester's token
(``same_approver``), not another token of the requester's person, nor of the person who made the
requester's token (``same_person``), whatever the tokens are named. What each kind does, and what
its request carries, is registered by the slice that does it (``registry.py``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, FabGuardError, Forbidden, InvalidRequest, NotFound
from fabguard.domain.values import Role
from fabguard.service.access import people, tokens
from fabguard.service.approvals.registry import Approved, Parameters, act_for, act_of
from fabguard.service.core.instance import Instance
from fabguard.store.approval_models import ApprovalRequest
from fabguard.store.eventlog import append_event

STATES = ("pending", "approved", "rejected", "expired")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Person:
    """Who asks or decides: the actor string the ledger shows, the token's name, its id and its person
    (None for the local CLI, which acts without a token)."""

    actor: str
    name: str
    token_id: str | None
    person_id: str | None = None

    @classmethod
    def of(cls, p: tokens.Principal) -> Person:
        return cls(p.actor, p.name, p.id, p.person_id)


@dataclass(frozen=True)
class ApprovalView:
    id: int
    kind: str
    summary: str
    target: str
    parameters: dict[str, Any]
    state: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    result: dict[str, Any] | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "target": self.target,
            "parameters": self.parameters,
            "state": self.state,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "result": self.result,
        }


def _state(row: ApprovalRequest, now: datetime) -> str:
    return "expired" if row.state == "pending" and row.expires_at <= now else row.state


def _view(row: ApprovalRequest, now: datetime) -> ApprovalView:
    return ApprovalView(
        id=row.id,
        kind=row.kind,
        summary=act_of(row.kind).summary,
        target=row.target,
        parameters=json.loads(row.parameters),
        state=_state(row, now),
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        result=json.loads(row.result) if row.result else None,
    )


def request(
    inst: Instance,
    target: str,
    parameters: Parameters,
    *,
    by: Person,
    secret_sha256: str | None = None,
) -> ApprovalView:
    """Record a pending request for the act ``parameters`` belong to, on ``target`` (an order, a CA, a
    person, a token's name): checked now, carried out when a second person approves."""
    with inst.db.transaction() as s:
        return request_in(inst, s, target, parameters, by=by, secret_sha256=secret_sha256)


def request_in(
    inst: Instance,
    s: Session,
    target: str,
    parameters: Parameters,
    *,
    by: Person,
    secret_sha256: str | None = None,
) -> ApprovalView:
    """:func:`request`, in the caller's transaction."""
    act = act_for(parameters)
    now = inst.clock()
    act.check(inst, s, target, parameters)
    stored = parameters.to_json()
    row = ApprovalRequest(
        kind=act.kind,
        target=target,
        parameters=json.dumps(stored, sort_keys=True),
        secret_sha256=secret_sha256,
        requested_by=by.actor,
        requester_name=by.name,
        requester_token=by.token_id,
        requester_person=by.person_id,
        requested_at=now,
        expires_at=now + timedelta(hours=inst.limits.approval_hours),
        state="pending",
    )
    s.add(row)
    s.flush()
    append_event(
        s,
        "approval.requested",
        at=now,
        actor=by.actor,
        detail={
            "approval_id": row.id,
            "kind": act.kind,
            "target": target,
            "parameters": stored,
            "expires_at": row.expires_at.isoformat(),
            "person_id": by.person_id,
        },
    )
    return _view(row, now)


def _refused(inst: Instance, approval_id: int, by: Person, error: FabGuardError) -> FabGuardError:
    """Log and record a refused decision (in its own transaction: the refusal itself changes nothing)."""
    log.warning("refused a decision on approval %s by %s: %s", approval_id, by.actor, error.code)
    with inst.db.transaction() as s:
        append_event(
            s,
            "approval.refused",
            at=inst.clock(),
            actor=by.actor,
            code=error.code,
            detail={"approval_id": approval_id},
        )
    return error


def decide(inst: Instance, approval_id: int, *, approve: bool, by: tokens.Principal) -> ApprovalView:
    """Approve (carrying out the act) or reject a pending request; ``by`` must be an approver (or admin)
    other than the requester, and the request must not have expired."""
    by.require(Role.APPROVER)
    person = Person.of(by)
    now = inst.clock()
    try:
        with inst.db.transaction() as s:
            row = s.get(ApprovalRequest, approval_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no approval request {approval_id}", code="approval_not_found")
            if row.state != "pending":
                raise Conflict(f"approval request {approval_id} is already {row.state}", code="approval_decided")
            refused = people.second_person_refusal(_requester(s, row), people.acting(s, person.actor, person.token_id))
            if refused is not None:
                raise Forbidden(
                    f"approval request {approval_id} needs a second person: "
                    + ("its requester cannot decide it" if refused == "same_approver" else _SAME_PERSON),
                    code=refused,
                )
            if row.expires_at <= now:
                raise Conflict(
                    f"approval request {approval_id} expired at {row.expires_at.isoformat(timespec='seconds')}; "
                    "ask again",
                    code="approval_expired",
                )
            row.decided_by, row.decider_token, row.decided_at = person.actor, person.token_id, now
            row.state = "approved" if approve else "rejected"
            append_event(
                s,
                f"approval.{row.state}",
                at=now,
                actor=person.actor,
                detail={
                    "approval_id": row.id,
                    "kind": row.kind,
                    "target": row.target,
                    "requested_by": row.requested_by,
                    "person_id": person.person_id,
                    "requester_person": row.requester_person,
                },
            )
            if approve:
                act = act_of(row.kind)
                done = act.apply(
                    inst,
                    s,
                    Approved(
                        id=row.id,
                        target=row.target,
                        parameters=act.load(row.parameters),
                        secret_sha256=row.secret_sha256,
                        now=now,
                        actor=person.actor,
                        requested_by=row.requested_by,
                        requester_person=row.requester_person,
                    ),
                )
                row.result = json.dumps(done, sort_keys=True)
            view = _view(row, now)
    except FabGuardError as exc:
        # Every refused decision is recorded, the act's own refusals included (a CA name taken since
        # the request was made, say): the approval stays pending and nothing else changes.
        if exc.status < 500:
            raise _refused(inst, approval_id, person, exc) from None
        raise
    after = act_of(view.kind).after
    if approve and after is not None:
        after(inst)
    return view


_SAME_PERSON = "the token deciding it is the requester's person's, or its person made the requester's token"


def _requester(s: Session, row: ApprovalRequest) -> people.Acting:
    """The requester as dual control compares them: their token's person and maker (for a request
    made before migration 0017, its requester's person is filled from the token)."""
    found = people.acting(s, row.requested_by, row.requester_token)
    if found.token_id is None:  # the local operator: judged by name, as before people existed
        return people.Acting(row.requester_name)
    return found


def get_approval(inst: Instance, approval_id: int) -> ApprovalView:
    with inst.db.read() as s:
        row = s.get(ApprovalRequest, approval_id)
        if row is None:
            raise NotFound(f"no approval request {approval_id}", code="approval_not_found")
        return _view(row, inst.clock())


def list_approvals(inst: Instance, state: str = "pending") -> list[ApprovalView]:
    """Requests in ``state`` (``pending`` by default: those still waiting and not expired), oldest first."""
    if state not in STATES:
        raise InvalidRequest(f"unknown approval state {state!r}; one of {', '.join(STATES)}", code="invalid_state")
    now = inst.clock()
    stored = "pending" if state == "expired" else state
    with inst.db.read() as s:
        rows = s.execute(
            select(ApprovalRequest).where(ApprovalRequest.state == stored).order_by(ApprovalRequest.id)
        ).scalars()
        return [v for v in (_view(r, now) for r in rows) if v.state == state]
