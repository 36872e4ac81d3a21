"""Dashboard routes: statistics, alerts and acknowledgements, a server-sent event stream, Prometheus
metrics, the page itself and its static files.

What the routes of one app share (the stream's snapshot cache, the ``/metrics`` registry) is a
``DashboardState`` that ``create_app`` puts on the app's state.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from fabguard.api.deps import Inst, Reader, Scraper, SiteReader, session_or_token, visible_order
from fabguard.api.media import answers
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.analytics import Alert
from fabguard.api.responses.stats import OrderFigures, Overview, Production
from fabguard.domain.errors import InvalidRequest, NotFound
from fabguard.domain.values import Role
from fabguard.service.access import tokens
from fabguard.service.analytics import dashboard_queries
from fabguard.service.analytics.metrics import production_metrics
from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.web import STATIC_DIR

# The stream polls the event counter this often; a browser sees a change within about this delay.
POLL_SECONDS = 0.5
# A fresh snapshot at least this often, so rates and projections move even when no event arrives.
REFRESH_SECONDS = 15.0
# A stream ends after this long and EventSource reconnects (with a fresh token check): it bounds how
# long a server shutdown waits for open streams.
STREAM_SECONDS = 60.0

AlertId = Annotated[str, Path(max_length=80, pattern=r"^[a-z_]+\.[0-9a-f]{16}$")]

# The page loads only its own files; it signs in once (POST /api/v1/session) and its session cookie is
# HttpOnly, so no script of the page ever holds the token.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SnapshotCache:
    """One overview per event sequence and site, shared by every open stream (computed once per change)."""

    def __init__(self, inst: Instance) -> None:
        self._inst = inst
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._values: dict[str | None, dict[str, Any]] = {}

    def get(self, seq: int, site_id: str | None = None) -> dict[str, Any]:
        """The overview at ``seq`` of all sites (None) or of one (an operator's stream)."""
        key = (seq, int(time.monotonic() // REFRESH_SECONDS))
        with self._lock:
            if self._key != key:
                self._values = {}
                self._key = key
            if site_id not in self._values:
                self._values[site_id] = dashboard_queries.overview(self._inst, site_id=site_id)
            return self._values[site_id]


class ProductionCollector(Collector):
    """Prometheus metrics read at scrape time from the orders and the analytics projection."""

    def __init__(self, inst: Instance) -> None:
        self._inst = inst

    def collect(self) -> Iterable[Metric]:
        inst = self._inst
        labels = ["order_id", "product_id", "site_id", "state"]
        quota = GaugeMetricFamily("fabguard_order_quota_units", "Units the order may provision.", labels=labels)
        used = GaugeMetricFamily("fabguard_order_used_units", "Units provisioned on the order.", labels=labels)
        refusals = CounterMetricFamily(
            "fabguard_refusals", "Refused requests by event kind and reason code.", labels=["kind", "code"]
        )
        tests = CounterMetricFamily("fabguard_test_records", "Stored test records by outcome.", labels=["outcome"])
        last = GaugeMetricFamily(
            "fabguard_fixture_last_activity_timestamp_seconds",
            "When the fixture last appeared in an event.",
            labels=["fixture_id", "site_id"],
        )
        figures = production_metrics(inst)
        for order_id, product_id, site_id, state, order_quota, order_used in figures.orders:
            values = [order_id, product_id, site_id, state]
            quota.add_metric(values, order_quota)
            used.add_metric(values, order_used)
        for kind, code, n in figures.refusals:
            refusals.add_metric([kind, code], n)
        for outcome, n in figures.tests:
            tests.add_metric([outcome], n)
        for fixture_id, site_id, at in figures.fixtures:
            last.add_metric([fixture_id, site_id], at)
        events = CounterMetricFamily("fabguard_events", "Events in the ledger.")
        events.add_metric([], figures.events)
        open_alerts = GaugeMetricFamily(
            "fabguard_alerts_open", "Unacknowledged alerts by kind and severity.", labels=["kind", "severity"]
        )
        for kind, severity, n in figures.open_alerts:
            open_alerts.add_metric([kind, severity], n)
        yield from (quota, used, refusals, tests, last, events, open_alerts)


class DashboardState:
    """What the dashboard's routes share in one app: the stream's snapshots and the ``/metrics`` registry."""

    def __init__(self, inst: Instance) -> None:
        self.snapshots = SnapshotCache(inst)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProductionCollector(inst))


async def dashboard_state(request: Request) -> DashboardState:
    """The app's ``DashboardState`` (``create_app`` puts it on the app's state)."""
    state: DashboardState = request.app.state.dashboard
    return state


Dashboard = Annotated[DashboardState, Depends(dashboard_state)]

router = APIRouter(tags=["analytics"])


def viewed_site(p: tokens.Principal, site: str | None) -> str | None:
    """The site a reader's view covers: an operator's own site always (asking for another is answered
    as a site that does not exist), anyone else's ``site`` (None: every site)."""
    if p.role in tokens.SITE_ROLES:
        if site is not None and site != p.site_id:
            raise NotFound(f"no site {site!r}", code="site_not_found")
        return p.site_id
    return site


SiteFilter = Annotated[
    str | None, Query(max_length=63, description="Only this site (an operator's token always sees its own)")
]
Since = Annotated[
    Timestamp | None, Query(description="Window start, RFC 3339 with its offset; default: 8 h before the end")
]
Until = Annotated[Timestamp | None, Query(description="Window end, RFC 3339 with its offset; default now")]


@router.get("/api/v1/stats/overview", response_model=Overview)
def stats_overview(
    inst: Inst, p: SiteReader, since: Since = None, until: Until = None, site: SiteFilter = None
) -> dict[str, Any]:
    """Orders with quota burn-down, fixtures with last activity, refusals, yield, series and alerts over a
    window (its buckets fit its span: docs/dashboard.md); an operator's token sees its own site only."""
    try:
        return dashboard_queries.overview(inst, since=since, until=until, site_id=viewed_site(p, site))
    except OverflowError:  # a window reaching past year 1 or 9999
        raise InvalidRequest(
            "the window reaches outside the dates a calendar can hold", code="invalid_window"
        ) from None


@router.get("/api/v1/stats/production", response_model=Production)
def stats_production(
    inst: Inst,
    p: SiteReader,
    since: Since = None,
    until: Until = None,
    product: Annotated[
        str | None, Query(max_length=63, description="Only units provisioned on this product's orders")
    ] = None,
    order: Annotated[str | None, Query(max_length=63, description="Only units provisioned on this order")] = None,
    site: SiteFilter = None,
    fixture: Annotated[str | None, Query(max_length=63, description="Only this fixture")] = None,
) -> dict[str, Any]:
    """Production over a window: provisioned units, throughput, tests by outcome, first-pass and final
    yield, retest rate, refusals by reason, the failure Pareto and Cpk/Ppk per measurement.

    Tests, failures and measurements follow the site and fixture filters; units (and their yield)
    follow the product and order filters once provisioned. An unknown order is a 404; an operator's
    token sees its own site only."""
    site = viewed_site(p, site)
    if order is not None and site is not None and p.role in tokens.SITE_ROLES:
        visible_order(p, orders.get_order(inst, order))
    try:
        return dashboard_queries.production(
            inst, since=since, until=until, product_id=product, order_id=order, site_id=site, fixture_id=fixture
        )
    except OverflowError:  # a window reaching past year 1 or 9999
        raise InvalidRequest(
            "the window reaches outside the dates a calendar can hold", code="invalid_window"
        ) from None


@router.get("/api/v1/stats/orders/{order_id}", response_model=OrderFigures)
def stats_order(inst: Inst, order_id: str, p: SiteReader) -> dict[str, Any]:
    """One order: burn-down and projected exhaustion, throughput, refusals, yield and Cpk/Ppk at its site,
    and its quota leases to site agents.

    Another site's order is not found for an operator's token."""
    visible_order(p, orders.get_order(inst, order_id))
    return dashboard_queries.order_stats(inst, order_id)


@router.get("/api/v1/alerts", response_model=list[Alert])
def list_alerts(
    inst: Inst,
    p: SiteReader,
    state: Annotated[Literal["open", "all"], Query(description="open (default) or all")] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, object]]:
    """Alerts from the anomaly detectors, open first; ``state=all`` includes acknowledged ones. An
    operator's token sees its own site's alerts only."""
    site = viewed_site(p, None)
    found = dashboard_queries.alerts(inst, site_id=site, open_only=state == "open", limit=limit)
    return [a.to_dict() for a in found]


@router.post("/api/v1/alerts/{alert_id}/ack", response_model=Alert)
def ack_alert(
    inst: Inst,
    alert_id: AlertId,
    p: Reader,
    note: Annotated[str, Body(embed=True, max_length=500)] = "",
) -> dict[str, object]:
    """Acknowledge an alert up to its newest evidence (an ``alert.acknowledged`` event); new evidence re-opens it."""
    tokens.require_role(inst, p, Role.ENGINEER, route=f"/api/v1/alerts/{alert_id}/ack")
    return dashboard_queries.acknowledge(inst, alert_id, actor=p.actor, note=note).to_dict()


def _stream_reader(inst: Instance, request: Request, token: str | None) -> tokens.Principal:
    """The ``?token=`` of the stream, else the browser session's cookie: a reader's or an operator's,
    refused and recorded otherwise."""
    route = "/api/v1/stream"
    p = session_or_token(inst, request, token)
    tokens.require_role(inst, p, Role.ENGINEER, Role.AUDITOR, Role.APPROVER, Role.OPERATOR, route=route)
    return p


async def _overview_events(
    inst: Instance, request: Request, token: str | None, snapshots: SnapshotCache
) -> AsyncIterator[str]:
    """An ``overview`` event whenever the event sequence grows (or the refresh period turns), until the
    stream's time is up or the client leaves."""
    yield f"retry: {int(POLL_SECONDS * 4000)}\n\n"
    started = time.monotonic()
    sent_key: tuple[int, int] | None = None
    while time.monotonic() - started < STREAM_SECONDS:
        if await request.is_disconnected():
            return
        seq = await run_in_threadpool(dashboard_queries.current_sequence, inst)
        key = (seq, int(time.monotonic() // REFRESH_SECONDS))
        if key != sent_key:
            # A token revoked while the page is open stops receiving at the next change.
            p = await run_in_threadpool(_stream_reader, inst, request, token)
            snapshot = await run_in_threadpool(snapshots.get, seq, viewed_site(p, None))
            yield f"id: {seq}\nevent: overview\ndata: {json.dumps(snapshot, separators=(',', ':'))}\n\n"
            sent_key = key
        await asyncio.sleep(POLL_SECONDS)


@router.get("/api/v1/stream", **answers("Server-sent events", "text/event-stream"))
async def dashboard_stream(
    inst: Inst,
    dashboard: Dashboard,
    request: Request,
    token: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Server-sent events: an ``overview`` snapshot whenever the event sequence grows.

    EventSource cannot send headers, so the API token comes as ``?token=`` (or the browser session's
    cookie). An operator's stream carries its own site's overview."""
    await run_in_threadpool(_stream_reader, inst, request, token)
    return StreamingResponse(
        _overview_events(inst, request, token, dashboard.snapshots),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/metrics", **answers("Prometheus text format", CONTENT_TYPE_LATEST.split(";")[0]))
def get_metrics(dashboard: Dashboard, _: Scraper) -> Response:
    """Prometheus text format (scrape with an API token as bearer credentials: a ``metrics`` role's token
    reads this and nothing else, and may live up to five years)."""
    return Response(generate_latest(dashboard.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

__all__ = ["DashboardState", "ProductionCollector", "SnapshotCache", "router"]
