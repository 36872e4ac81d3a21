"""The figures ``/metrics`` exposes, read at scrape time as plain values (the API formats them)."""

from __future__ import annotations

from dataclasses import dataclass

from fabguard.service.analytics import dashboard_queries
from fabguard.service.core.instance import Instance
from fabguard.store import totals
from fabguard.store.eventlog import event_count
from fabguard.store.totals import OrderQuota


@dataclass(frozen=True)
class ProductionMetrics:
    """Every figure of a scrape, each list in a stable order."""

    orders: list[OrderQuota]  # id, product, site, state, quota, used
    refusals: list[tuple[str, str, int]]  # event kind, reason code, count
    tests: list[tuple[str, int]]  # outcome, count
    fixtures: list[tuple[str, str, float]]  # fixture, site, last activity (POSIX seconds)
    events: int
    open_alerts: list[tuple[str, str, int]]  # kind, severity, count; sorted


def production_metrics(inst: Instance) -> ProductionMetrics:
    """Orders' quotas and use, refusals and tests folded so far, fixtures' last activity, the ledger's
    size and open alerts by kind and severity (the projection is caught up first)."""
    counts = dashboard_queries.open_alert_counts(inst)  # catches the projection up first
    with inst.db.read() as s:
        seq = event_count(s)
        orders = totals.order_quotas(s)
        refusals = totals.refusal_totals(s)
        tests = totals.outcome_totals(s)
        fixtures = [(f, site, at.timestamp()) for f, site, at in totals.fixtures_last_seen(s)]
    open_alerts = [(kind, severity, n) for (kind, severity), n in sorted(counts.items())]
    return ProductionMetrics(orders, refusals, tests, fixtures, seq, open_alerts)
