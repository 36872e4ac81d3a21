"""Shared route dependencies: the instance, the bearer token's principal and its roles, the fixture's TLS identity."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fabguard.api.logs import note_who
from fabguard.api.tls import client_cert_der
from fabguard.domain.errors import Forbidden, NotFound, Refusal
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.ratelimit import RateLimiter
from fabguard.domain.values import Role
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.service.access import sessions, tokens
from fabguard.service.catalog import fixtures
from fabguard.service.catalog.orders import OrderView
from fabguard.service.core import events
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome, Runner

# Bounded integers: a value past 64 bits is a 422, never an overflow deep in the database driver.
Count = Annotated[int, Query(ge=0, le=2**62)]
ChangeId = Annotated[int, Path(ge=1, le=2**62)]

_bearer = HTTPBearer(auto_error=False, description="An API token: fgt_...")


# The dependencies that only look something up on the app are ``async``: FastAPI runs a plain ``def``
# dependency in its thread pool, and that hand-off to a thread and back cost more than all else they do
# (issue 28's profile: thread hand-offs were the top entry at one unit per request).


async def instance(request: Request) -> Instance:
    """The instance the app was built for (``create_app`` puts it on the app's state)."""
    inst: Instance = request.app.state.instance
    return inst


Inst = Annotated[Instance, Depends(instance)]


def runner_of(request: Request) -> Runner:
    """What decides provisioning units: the app's group-commit writer (``runtime.group_commit``)."""
    runner: Runner = request.app.state.committer.run
    return runner


async def provisioner(request: Request) -> Runner:
    """``runner_of`` as a dependency."""
    return runner_of(request)


Provisioner = Annotated[Runner, Depends(provisioner)]


async def decided(request: Request, jobs: Sequence[Job]) -> list[Outcome]:
    """The outcomes of ``jobs`` from the app's writer, after their commit, awaited on the event loop: the
    writer hands them back with ``call_soon_threadsafe``, so no request thread is handed the request and
    then woken for its answer (issue 28's profile: those hand-offs were the top entry). While the writer is
    not running, ``run`` decides them in a worker thread."""
    committer: GroupCommitter = request.app.state.committer
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[Outcome]] = loop.create_future()

    def resolve(outcomes: list[Outcome]) -> None:
        if not future.done():  # the request may have been given up meanwhile
            future.set_result(outcomes)

    def hand_back(outcomes: list[Outcome]) -> None:  # in the writer's thread
        loop.call_soon_threadsafe(resolve, outcomes)

    if committer.submit(jobs, hand_back):
        return await future
    return await run_in_threadpool(committer.run, jobs)


async def provisioning_writer(request: Request) -> GroupCommitter:
    """The app's provisioning writer itself (the health route asks whether it is alive)."""
    committer: GroupCommitter = request.app.state.committer
    return committer


Writer = Annotated[GroupCommitter, Depends(provisioning_writer)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: Request) -> None:
    """A browser session's request that changes something must come from the dashboard's own origin:
    the cookie is SameSite=Strict, and this ``Origin`` check closes what SameSite leaves (older
    browsers, a sibling subdomain). 403 ``cross_origin_refused`` otherwise."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host or origin != f"{request.url.scheme}://{host}":
        raise Forbidden(
            "a browser session's change must come from the dashboard's own page (Origin header)",
            code="cross_origin_refused",
        )


def session_or_token(inst: Instance, request: Request, bearer: str | None) -> tokens.Principal:
    """The caller: its bearer token when it sends one, else its browser session's cookie (a change
    through a session must come from the page's own origin)."""
    anonymous = request.app.state.anonymous_refusal_records
    cookie = request.cookies.get(sessions.COOKIE)
    if bearer is None and cookie:
        if request.method not in SAFE_METHODS:
            same_origin(request)
        return sessions.authenticate_session(inst, cookie, route=request.url.path, anonymous=anonymous)
    return tokens.authenticate_token(inst, bearer, route=request.url.path, anonymous=anonymous)


def principal(
    inst: Inst, request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> tokens.Principal:
    p = session_or_token(inst, request, creds.credentials if creds else None)
    if p.person_id:
        note_who(request.scope, "person", p.person_id, p.person_name or p.name)
    else:
        note_who(request.scope, "token", p.id, p.name)
    return p


def allow(*roles: Role) -> Callable[..., tokens.Principal]:
    """A dependency admitting a bearer token of one of ``roles`` (admin passes every check): 403 otherwise,
    recorded as an ``auth.refused`` event naming the token.

    The routes' ``Annotated`` aliases below are the one place each role set is declared; docs/roles.md
    is the table they implement and tests/api/test_role_matrix.py holds them to it."""

    def check(inst: Inst, request: Request, p: Annotated[tokens.Principal, Depends(principal)]) -> tokens.Principal:
        tokens.require_role(inst, p, *roles, route=request.url.path)
        return p

    return check


# Who may do what (docs/roles.md). Admin passes every check; an operator only SiteReader's routes,
# which show it its own site and answer another site's order as not found.
engineer = allow(Role.ENGINEER)
admin = allow(Role.ADMIN)
approver = allow(Role.APPROVER)
reader = allow(Role.ENGINEER, Role.AUDITOR, Role.APPROVER)
site_reader = allow(Role.ENGINEER, Role.AUDITOR, Role.APPROVER, Role.OPERATOR)
field_checker = allow(Role.FIELD)
scraper = allow(Role.ENGINEER, Role.AUDITOR, Role.APPROVER, Role.METRICS)  # /metrics: the readers and metrics


def visible_order(p: tokens.Principal, order: OrderView) -> OrderView:
    """The order, if ``p`` may see its site; an operator asking for another site's order is told it does
    not exist (404 ``order_not_found``, the same answer as for an absent order), so ids do not leak."""
    if not p.sees_site(order.site_id):
        raise NotFound(f"no order {order.id!r}", code="order_not_found")
    return order


async def fixture_of(request: Request) -> FixtureFacts:
    """The enrolled, active fixture holding the TLS client certificate (refused and recorded otherwise),
    within its request rate (``rate_limited`` otherwise).

    On SQLite a remembered fixture is answered on the event loop (ADR 0021: the auth generation is a local
    read that waits for no writer); anything that may write (a refusal's event) or read over the network
    (PostgreSQL) runs in a worker thread, as the ``def`` dependency this was did."""
    inst: Instance = request.app.state.instance
    der = client_cert_der(request.scope)
    facts = fixtures.remembered_fixture(inst, der) if fixtures.generation_is_local(inst) else None
    if facts is None:
        anonymous = request.app.state.anonymous_refusal_records
        facts = await run_in_threadpool(
            partial(fixtures.authenticate_fixture, inst, der, route=request.url.path, anonymous=anonymous)
        )
    note_who(request.scope, "fixture", facts.id, facts.id)
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
            detail: dict[str, object] = {"route": request.url.path}
            await run_in_threadpool(
                partial(events.record_refusal, inst, "request.refused", refusal, fixture_id=facts.id, detail=detail)
            )
        raise refusal
    return facts


Engineer = Annotated[tokens.Principal, Depends(engineer)]
SiteReader = Annotated[tokens.Principal, Depends(site_reader)]
Admin = Annotated[tokens.Principal, Depends(admin)]
Approver = Annotated[tokens.Principal, Depends(approver)]
Reader = Annotated[tokens.Principal, Depends(reader)]
Scraper = Annotated[tokens.Principal, Depends(scraper)]
FieldChecker = Annotated[tokens.Principal, Depends(field_checker)]
Fixture = Annotated[FixtureFacts, Depends(fixture_of)]

__all__ = [
    "Admin",
    "Approver",
    "ChangeId",
    "Count",
    "Engineer",
    "Fixture",
    "Inst",
    "Reader",
    "Scraper",
    "SiteReader",
    "admin",
    "allow",
    "approver",
    "decided",
    "engineer",
    "fixture_of",
    "instance",
    "principal",
    "reader",
    "runner_of",
    "site_reader",
    "visible_order",
]
