"""The FastAPI application: admin API (bearer tokens), fixture API (TLS client certificates)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from fabguard import __version__
from fabguard.api import docs
from fabguard.api.errors import BodyLimit, install_error_handlers
from fabguard.api.hot_routes import lean_routes
from fabguard.api.logs import RequestLog
from fabguard.api.metrics import ServerMetrics
from fabguard.api.routes import (
    approvals,
    audit,
    authorities,
    catalog,
    dashboard,
    est,
    field,
    firmware,
    fixtures,
    genealogy,
    handoff,
    leases,
    ledger,
    licences,
    meta,
    orders,
    people,
    publication,
    reports,
    revocation,
    royalties,
    session,
    station,
    stations,
    tokens,
    witness,
)
from fabguard.domain.ratelimit import EventAllowance, RateLimiter
from fabguard.runtime.field_writer import FieldWriter
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.runtime.workers import BackgroundWorkers
from fabguard.service.core.instance import Instance


def operation_id(route: APIRoute) -> str:
    """A route's operationId is its function's name (``list_cas``, ``approve_release``): what a generated
    client calls it. Names are unique across the API (``tests/api/test_openapi.py``)."""
    return route.name


def _include_routes(app: FastAPI) -> None:
    # Routes are tried in order: the line's hot, static paths first (tests/api/test_route_order.py).
    for routes in (
        station,
        field,
        meta,
        tokens,
        catalog,
        orders,
        approvals,
        fixtures,
        audit,
        ledger,
        reports,
        authorities,
        publication,
        revocation,
        royalties,
        licences,
        handoff,
        witness,
        leases,
        people,
    ):
        app.include_router(routes.router)
    app.include_router(est.router)
    app.include_router(dashboard.router)
    app.include_router(stations.router)
    app.include_router(genealogy.router)
    app.include_router(session.router)
    app.include_router(firmware.router)
    app.include_router(docs.router)
    # The hot path's lean routes before all (FastAPI's stay for /openapi.json and what they hand on: ADR 0021).
    app.router.routes[:0] = lean_routes()


def create_app(inst: Instance, *, metrics_dir: Path | None = None) -> Any:
    """Build the ASGI app for ``inst``: the FastAPI app inside the body size and read-time limit, inside
    the request log (request ids, one line a request, ``api.logs``), so even a refused body is logged
    (``metrics_dir``: a worker of ``serve --workers N``, whose metrics are the server's, ``api.metrics``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers = BackgroundWorkers(inst, *server_metrics.threads).start()  # maintenance, projector, webhooks, …
        committer.start()
        field_writer.start()
        try:
            yield
        finally:
            field_writer.stop()
            committer.stop()
            workers.stop()

    app = FastAPI(
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # api/docs.py serves /docs from shipped assets
        redoc_url=None,  # ReDoc would load from a CDN
        title="FabGuard",
        version=__version__,
        description=(
            "Quota-bound, test-gated device certificate issuance for contract manufacturing. "
            "Admin calls use `Authorization: Bearer <token>`; fixture calls use the fixture's TLS "
            'client certificate. Errors are `{"error": {"code": ..., "message": ...}}`.'
        ),
    )
    app.state.instance = inst  # what deps.instance hands to every route
    # Provisioning's writer (group commit); until the lifespan starts it, units are decided in the request's thread.
    committer = app.state.committer = GroupCommitter(inst)
    # Field checks' writer (group commit of checks, ADR 0015); routes/field.py hands it their answers.
    field_writer = app.state.field_writer = FieldWriter(inst)
    app.state.fixture_rate = RateLimiter(inst.limits.fixture_requests_per_second, inst.limits.fixture_request_burst)
    app.state.fixture_rate_records = RateLimiter(1, 1)  # rate_limited events: one a second per fixture
    # Refusals of anonymous callers (no, a malformed or an unknown token; no client certificate) are
    # recorded 1 a second, 10 at once; the next one recorded counts those left out.
    app.state.anonymous_refusal_records = EventAllowance(1, 10)
    app.state.dashboard = dashboard.DashboardState(inst)  # the stream's snapshots and the /metrics registry
    # requests, units, writers' groups and queues, pool
    server_metrics = ServerMetrics(
        app.state.dashboard.registry, inst, committer, field_writer, multiprocess_dir=metrics_dir
    )
    install_error_handlers(app)
    _include_routes(app)
    limits = inst.limits
    return RequestLog(
        BodyLimit(
            app, limits.max_body_bytes, read_seconds=limits.body_read_seconds, max_header_bytes=limits.max_header_bytes
        ),
        server_metrics,
    )


__all__ = ["create_app"]
