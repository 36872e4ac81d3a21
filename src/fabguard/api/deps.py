"""Shared route dependencies: the instance, the bearer token's principal and its roles, the fixture's TLS identity."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fabguard.api.tls import client_cert_der
from fabguard.domain.errors import Refusal
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.ratelimit import RateLimiter
from fabguard.domain.values import Role
from fabguard.service import events, fixtures, tokens
from fabguard.service.instance import Instance

# Bounded integers: a value past 64 bits is a 422, never an overflow deep in the database driver.
Count = Annotated[int, Query(ge=0, le=2**62)]
ChangeId = Annotated[int, Path(ge=1, le=2**62)]

_bearer = HTTPBearer(auto_error=False, description="An API token: fgt_...")


def instance(request: Request) -> Instance:
    """The instance the app was built for (``create_app`` puts it on the app's state)."""
    inst: Instance = request.app.state.instance
    return inst


Inst = Annotated[Instance, Depends(instance)]


def principal(
    inst: Inst, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> tokens.Principal:
    return tokens.authenticate_token(inst, creds.credentials if creds else None)


def operator(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
    p.require(Role.ENGINEER)
    return p


def admin(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
    p.require(Role.ADMIN)
    return p


def approver(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
    p.require(Role.APPROVER)
    return p


def reader(p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
    p.require(Role.ENGINEER, Role.AUDITOR, Role.APPROVER)
    return p


def fixture(inst: Inst, request: Request) -> FixtureFacts:
    """The enrolled, active fixture holding the TLS client certificate (refused and recorded otherwise),
    within its request rate (``rate_limited`` otherwise)."""
    facts = fixtures.authenticate_fixture(inst, client_cert_der(request.scope), route=request.url.path)
    limiter: RateLimiter = request.app.state.fixture_rate
    wait = limiter.take(facts.id, time.monotonic())
    if wait:
        refusal = Refusal(
            "rate_limited",
            f"fixture {facts.id} is over {limiter.rate:g} requests a second; retry in {math.ceil(wait)} s",
        )
        recorded: RateLimiter = request.app.state.fixture_rate_records
        if recorded.take(facts.id, time.monotonic()) == 0.0:
            # Recorded once a second at most, so a flood of requests is no flood of events.
            events.record_refusal(
                inst, "request.refused", refusal, fixture_id=facts.id, detail={"route": request.url.path}
            )
        raise refusal
    return facts


Operator = Annotated[tokens.Principal, Depends(operator)]
Admin = Annotated[tokens.Principal, Depends(admin)]
Approver = Annotated[tokens.Principal, Depends(approver)]
Reader = Annotated[tokens.Principal, Depends(reader)]
Fixture = Annotated[FixtureFacts, Depends(fixture)]

__all__ = [
    "Admin",
    "Approver",
    "ChangeId",
    "Count",
    "Fixture",
    "Inst",
    "Operator",
    "Reader",
    "admin",
    "approver",
    "fixture",
    "instance",
    "operator",
    "principal",
    "reader",
]
