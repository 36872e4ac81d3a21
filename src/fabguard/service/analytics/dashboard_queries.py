"""Production metrics and alerts, read from the analytics projection (ADR 0005).

The projector (``fabguard.service.analytics.projection``) folds the event log into per-minute and per-hour
rollups and stored alerts; the functions here read those small tables (``fabguard.store.windows``), so
a dashboard query costs the same at a thousand test records as at a million. Every read first lets
the projector catch up (a server's background projector normally leaves nothing to do) and reports
how many events it is still behind (``lag``; 0 when what is shown covers every event).

An acknowledgement is itself an event, ``alert.acknowledged``, so it is in the ledger too; it covers
the evidence seen when it was made, and new evidence re-opens the alert.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from fabguard.analytics import figures as figure
from fabguard.analytics import ranges
from fabguard.analytics.alerts import Acknowledgement, Alert, with_acknowledgements
from fabguard.analytics.fold import ACK_KIND
from fabguard.analytics.settings import DEFAULT, AnalyticsSettings, settings_from_dict
from fabguard.analytics.spc import capability_from_sums
from fabguard.domain.errors import ConfigurationError, InvalidRequest, NotFound
from fabguard.service.agent import quota_leases
from fabguard.service.analytics import projection, record_samples
from fabguard.service.catalog import fixtures, orders
from fabguard.service.core.instance import Instance
from fabguard.service.field import genuineness
from fabguard.store import alert_rows, rollups, totals, windows
from fabguard.store.eventlog import append_event, event_count
from fabguard.store.windows import Scope, at_minute

# A read catches the projector up by at most this many events; more is left to the background
# projector (and shown as ``lag``), so a page never waits minutes behind a backlog.
READ_CATCH_UP = 20_000
SETTINGS_FILE = "analytics.json"
FIELD_CHECKS_SHOWN = 10  # the latest field checks the overview carries


def load_settings(inst: Instance) -> AnalyticsSettings:
    """The instance's analytics settings: ``<home>/analytics.json`` when present, else the defaults.

    The file is an object with any of the settings ``settings_from_dict`` names. It is read on every
    call, so an edit takes effect without a restart; a broken file is a configuration error, never
    silently ignored.
    """
    path = inst.home / SETTINGS_FILE
    if not path.exists():
        return DEFAULT
    try:
        return settings_from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def current_sequence(inst: Instance) -> int:
    """The newest event sequence: what the live stream polls."""
    with inst.db.read() as s:
        return event_count(s)


def refresh(
    inst: Instance, settings: AnalyticsSettings | None = None, *, max_events: int | None = READ_CATCH_UP
) -> int:
    """Let the projector catch up (by at most ``max_events``; None: all the way); returns the lag left."""
    reached = projection.advance(inst, settings or load_settings(inst), max_events=max_events).cursor
    with inst.db.read() as s:
        return max(event_count(s) - max(reached, rollups.read_cursor(s)), 0)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _capability(s: Session, scope: Scope) -> list[dict[str, Any]]:
    """Cp/Cpk and Pp/Ppk per measurement over the scope's hours (limits: the newest seen)."""
    return [
        capability_from_sums(
            phase=m.phase,
            name=m.name,
            n=m.n,
            total=m.total,
            total_sq=m.total_sq,
            mr_total=m.mr_total,
            mr_n=m.mr_n,
            lower=m.lower,
            upper=m.upper,
            ref=m.ref,
        ).to_dict()
        for m in windows.measurement_sums(s, scope)
    ]


def _burn(
    order: orders.OrderView, recent: dict[str, tuple[int, int]], now: datetime, window: timedelta
) -> dict[str, object]:
    """Remaining quota and, at the rate of the last ``window``, when it runs out (None when idle)."""
    n, last = recent.get(order.id, (0, 0))
    rate = n / (window.total_seconds() / 3600)
    remaining = max(order.quota - order.used, 0)
    if remaining == 0:
        exhaustion: datetime | None = min(at_minute(last + 1), now) if n else now
    elif rate > 0:
        exhaustion = now + timedelta(hours=remaining / rate)
    else:
        exhaustion = None
    return {
        "quota": order.quota,
        "used": order.used,
        "remaining": remaining,
        "rate_per_hour": rate,
        "projected_exhaustion": _iso(exhaustion),
    }


def _sole_order_at_site(inst: Instance, view: orders.OrderView) -> bool:
    """Whether ``view`` is the only order ever created at its site (docs/figures.md: its units then
    include the site's units never provisioned, its scrapped boards)."""
    return not any(v.site_id == view.site_id and v.id != view.id for v in orders.list_orders(inst))


def _order_units(inst: Instance, view: orders.OrderView, since: datetime, until: datetime, **filters: Any) -> Scope:
    """The units an order's yield counts (docs/figures.md): those provisioned on it and, when it is the
    only order at its site, the site's units never provisioned (test records carry no order, so a
    scrapped board is the order's only when no other order could have made it)."""
    site = view.site_id if _sole_order_at_site(inst, view) else None
    return Scope(since, until, order_id=view.id, unprovisioned_site=site, **filters)


def order_stats(inst: Instance, order_id: str, *, settings: AnalyticsSettings | None = None) -> dict[str, Any]:
    """One order: quota burn-down, throughput, refusals, yield of its units, capability over its own
    units (each one's latest test at the order's site), the failure Pareto at its site, its quota leases."""
    settings = settings or load_settings(inst)
    lag = refresh(inst, settings)
    view = orders.get_order(inst, order_id)
    now = inst.clock()
    window = Scope(max(now - settings.window, view.created_at), now, order_id=order_id, site_id=view.site_id)
    since_created = _order_units(inst, view, view.created_at, now)
    at_site = Scope(view.created_at, now, site_id=view.site_id)
    capability, sample = record_samples.order_capability(inst, view.id, view.site_id)
    leases = quota_leases.list_leases(inst, order_id=view.id)  # its own read, not nested in ours
    with inst.db.read() as s:
        recent = windows.recent_provisioned(s, now - settings.burn_window)
        return {
            "order": view.to_dict(),
            "burn_down": _burn(view, recent, now, settings.burn_window),
            "yield": windows.unit_yield(s, since_created).to_dict(),
            "refused": view.refused,
            "series": windows.series(s, window, settings.bucket),
            "capability": capability,
            "capability_basis": "units",
            "capability_sample": sample,
            "failures": windows.pareto(s, at_site),
            "leases": leases,
            "as_of": now.isoformat(),
            "sequence": event_count(s),
            "lag": lag,
        }


def _window(
    inst: Instance, settings: AnalyticsSettings, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime, timedelta]:
    """A view's window and bucket width: the settings' window up to now by default, else the given
    ends (``analytics.ranges``: a bucket that fits the span); a bad window is ``invalid_window``."""
    now = inst.clock()
    if since is None and until is None:
        return now - settings.window, now, settings.bucket
    until = until or now
    since = since or until - settings.window
    problem = ranges.window_problem(since, until)
    if problem:
        raise InvalidRequest(problem, code="invalid_window")
    return since, until, ranges.bucket_for(until - since)


def overview(
    inst: Instance,
    *,
    settings: AnalyticsSettings | None = None,
    alerts_limit: int = 50,
    since: datetime | None = None,
    until: datetime | None = None,
    site_id: str | None = None,
) -> dict[str, Any]:
    """Everything the dashboard shows at once: orders, fixtures, refusals, series, alerts, over a
    window (default: the settings' window up to now) and, with ``site_id``, of that site alone (an
    operator's view: its site's orders, fixtures, figures and alerts, no field checks)."""
    settings = settings or load_settings(inst)
    lag = refresh(inst, settings)
    now = inst.clock()
    since, until, bucket = _window(inst, settings, since, until)
    scope = Scope(since, until, site_id=site_id)
    views = [v for v in orders.list_orders(inst) if site_id is None or v.site_id == site_id]
    with inst.db.read() as s:
        seq = event_count(s)
        last_seen = windows.last_activity(s)
        refusals = windows.refusals(s, scope)
        provisioned = totals.provisioned_total(s) if site_id is None else sum(v.used for v in views)
        yield_stats = windows.unit_yield(s, scope)
        series = windows.series(s, scope, bucket)
        recent = windows.recent_provisioned(s, now - settings.burn_window)
        order_rows = [{**v.to_dict(), "burn_down": _burn(v, recent, now, settings.burn_window)} for v in views]
        shown = alert_rows.listed(s, site_id=site_id, limit=alerts_limit)
        open_alerts = sum(alert_rows.open_counts(s, site_id=site_id).values())
    fixture_rows = [
        {**fixtures.fixture_dict(f), "last_activity": _iso(last_seen.get(f.id) or f.enrolled_at)}
        for f in fixtures.list_fixtures(inst)
        if site_id is None or f.site_id == site_id
    ]
    return {
        "as_of": now.isoformat(),
        "sequence": seq,
        "lag": lag,
        "site_id": site_id,
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "totals": {
            "orders": len(views),
            "active_orders": sum(1 for v in views if v.state == "active"),
            "provisioned": provisioned,
            "refused": sum(sum(c.values()) for c in refusals.values()),
            "open_alerts": open_alerts,
        },
        "yield": yield_stats.to_dict(),
        "orders": order_rows,
        "fixtures": fixture_rows,
        "refusals": refusals,
        "series": series,
        "bucket_seconds": int(bucket.total_seconds()),
        "alerts": [a.to_dict() for a in shown],
        "field_checks": genuineness.list_checks(inst, limit=FIELD_CHECKS_SHOWN) if site_id is None else [],
    }


def production(
    inst: Instance,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    product_id: str | None = None,
    order_id: str | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
    settings: AnalyticsSettings | None = None,
    catch_up: int | None = READ_CATCH_UP,
) -> dict[str, Any]:
    """Production figures over any window (default: the settings' window up to now), for all of
    production or one product, order, site or fixture: tests, yield, throughput, provisioned units,
    refusals by reason, the failure Pareto and per-measurement capability.

    Tests and measurements belong to a site and fixture when they are made; a unit's tests count for
    an order (and its product) once the unit is provisioned on it, so an order's yield is that of its
    units, and units never provisioned count only for their site and fixture.
    """
    settings = settings or load_settings(inst)
    now = inst.clock()
    until = until or now
    since = since or until - settings.window
    problem = ranges.window_problem(since, until)
    if problem:
        raise InvalidRequest(problem, code="invalid_window")
    lag = refresh(inst, settings, max_events=catch_up)
    units_scope: Scope | None = None
    if order_id is not None and product_id is None:
        try:
            view = orders.get_order(inst, order_id)
        except NotFound:
            raise NotFound(f"no order {order_id[:80]!r}", code="order_not_found") from None
        units_scope = _order_units(inst, view, since, until, site_id=site_id, fixture_id=fixture_id)
    with inst.db.read() as s:
        order_ids = totals.product_orders(s, product_id) if product_id is not None else None
        if order_id is not None and not totals.order_exists(s, order_id):
            raise NotFound(f"no order {order_id[:80]!r}", code="order_not_found")
        scope = Scope(since, until, product_id, order_id, site_id, fixture_id, order_ids)
        # Per-unit yield follows orders; tests, failures and measurements follow sites and fixtures.
        tests_scope = Scope(since, until, site_id=site_id, fixture_id=fixture_id)
        provisioned = sum(windows.counts(s, scope, "unit.provisioned").values())
        outcomes = windows.counts(s, tests_scope, "test.recorded")
        hours = (until - since).total_seconds() / 3600
        figures = {
            "window": {"since": since.isoformat(), "until": until.isoformat(), "hours": hours},
            "scope": {"product_id": product_id, "order_id": order_id, "site_id": site_id, "fixture_id": fixture_id},
            "provisioned": provisioned,
            "throughput_per_hour": figure.throughput_per_hour(provisioned, hours),
            "tests": {
                "total": sum(outcomes.values()),
                "by_outcome": dict(sorted(outcomes.items())),
                "per_hour": sum(outcomes.values()) / hours,
            },
            "yield": windows.unit_yield(
                s, units_scope or (scope if (order_id or product_id) else tests_scope)
            ).to_dict(),
            "refusals": windows.refusals(s, scope),
            "failures": windows.pareto(s, tests_scope),
            "capability": _capability(s, tests_scope),
            "sequence": event_count(s),
            "lag": lag,
        }
    return figures


def alerts(
    inst: Instance,
    *,
    settings: AnalyticsSettings | None = None,
    site_id: str | None = None,
    open_only: bool = False,
    limit: int | None = None,
) -> list[Alert]:
    """The alerts the detectors have raised (of one site, open ones only, the first ``limit``: each cut made by
    the database), acknowledged ones marked, open ones first (``alert_rows.listed``)."""
    refresh(inst, settings)
    with inst.db.read() as s:
        return alert_rows.listed(s, site_id=site_id, open_only=open_only, limit=limit)


def open_alert_counts(inst: Instance, *, settings: AnalyticsSettings | None = None) -> dict[tuple[str, str], int]:
    """Open alerts by kind and severity label, once the projection has caught up."""
    refresh(inst, settings)
    with inst.db.read() as s:
        return alert_rows.open_counts(s)


def acknowledge(
    inst: Instance, alert_id: str, *, actor: str, note: str = "", settings: AnalyticsSettings | None = None
) -> Alert:
    """Acknowledge an open alert up to its newest evidence; recorded as an ``alert.acknowledged`` event."""
    if len(note) > 500 or not note.isprintable():
        raise InvalidRequest("an acknowledgement note is at most 500 printable characters", code="invalid_note")
    refresh(inst, settings)
    with inst.db.read() as s:
        alert = alert_rows.found(s, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id[:80]!r}", code="alert_not_found")
    with inst.db.transaction() as s:
        append_event(
            s,
            ACK_KIND,
            at=inst.clock(),
            actor=actor,
            order_id=alert.order_id,
            fixture_id=alert.fixture_id,
            detail={
                "alert_id": alert.id,
                "alert_kind": alert.kind,
                "up_to_seq": alert.last_seq,
                "note": note,
            },
        )
    return with_acknowledgements([alert], [Acknowledgement(alert.id, alert.last_seq, actor)])[0]
