"""Issuing a quota lease is two people's (it certifies the agent's CA under the root): one asks with a
``LeaseIssue``, checked then; a second approves, and the lease is issued in the approval's transaction
(``quota_leases.issue_lease_in``, a ``lease.issued`` event naming both)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from fabguard.domain.values import OrderId
from fabguard.service.agent import quota_leases
from fabguard.service.agent.agent_request import AgentRequest, parse_agent_request
from fabguard.service.approvals.registry import Approved, register
from fabguard.service.core import client_trust
from fabguard.service.core.instance import Instance

LEASE_ISSUE = "lease.issue"


@dataclass(frozen=True, slots=True)
class LeaseIssue:
    """``units`` of the order (the request's target) for ``expires_in_seconds``, to the agent that sent ``request``."""

    units: int
    expires_in_seconds: int
    request: AgentRequest

    @classmethod
    def of(cls, units: int, expires_in: timedelta, request: AgentRequest) -> LeaseIssue:
        return cls(units, int(expires_in.total_seconds()), request)

    @property
    def expires_in(self) -> timedelta:
        return timedelta(seconds=self.expires_in_seconds)

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units, "expires_in_seconds": self.expires_in_seconds, "request": self.request.text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseIssue:
        return cls(int(data["units"]), int(data["expires_in_seconds"]), parse_agent_request(data["request"]))


def _lease_is_possible(inst: Instance, s: Session, target: str, p: LeaseIssue) -> None:
    order_id = OrderId.named(target)
    quota_leases.check_lease(inst, s, order_id, units=p.units, expires_in=p.expires_in, request=p.request)
    inst.cas.issuer("root", s)  # the root signs the agent's CA: fail now, not once a second person approves


def _issue_lease(inst: Instance, s: Session, a: Approved[LeaseIssue]) -> dict[str, object]:
    p = a.parameters
    bundle = quota_leases.issue_lease_in(
        inst,
        s,
        OrderId.named(a.target),
        units=p.units,
        expires_in=p.expires_in,
        request=p.request,
        actor=a.actor,
        detail=a.detail,
    )
    terms = bundle["lease"]
    assert isinstance(terms, dict)
    return {k: terms[k] for k in ("lease_id", "order_id", "site_id", "units", "not_after")}


register(
    LEASE_ISSUE,
    LeaseIssue,
    summary="issue a quota lease to a site agent (its CA under the root)",
    check=_lease_is_possible,
    apply=_issue_lease,
    after=client_trust.write_client_trust,  # the agent CA: running servers trust its units at the handshake
)

__all__ = ["LEASE_ISSUE", "LeaseIssue"]
