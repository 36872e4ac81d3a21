"""The dashboard's station and line view: yield, throughput and retest rate per fixture (a station)
and per site (a line), the failure Pareto, a measurement's distribution against its limits, the units
that failed a step, and capability over one order's own units.

Per-fixture figures are sums over the rollups (``store.station_windows``); the distribution, the
failing units and an order's capability read a bounded sample of the newest stored records (their
size is in the answer), so no request reads every record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fabguard.analytics import figures as figure
from fabguard.analytics import ranges, samples
from fabguard.analytics.production import YieldStats
from fabguard.domain.errors import InvalidRequest
from fabguard.service.analytics import dashboard_queries
from fabguard.service.analytics.record_samples import failed_step as _failed_step
from fabguard.service.analytics.record_samples import parsed as _parsed
from fabguard.service.core.instance import Instance
from fabguard.store import station_windows, windows
from fabguard.store.station_windows import StoredRecord
from fabguard.store.windows import Scope

SAMPLE = 500  # the newest records a distribution is drawn from
FAILING_SCAN = 1000  # the newest failed records searched (newest first) for a step's failing units
FAILING_SHOWN = 50  # the search stops at this many units


def _window(inst: Instance, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    settings = dashboard_queries.load_settings(inst)
    until = until or inst.clock()
    since = since or until - settings.window
    problem = ranges.window_problem(since, until)
    if problem:
        raise InvalidRequest(problem, code="invalid_window")
    return since, until


def _naming(records: list[StoredRecord], *names: str | None) -> list[StoredRecord]:
    """The records whose JSON text (their body, or the digest read instead) holds every plain
    name in ``names`` as a string: a cheap test that spares parsing records that cannot hold them (a
    name with quotes, backslashes or non-ASCII is not tested, since its JSON spelling may differ)."""
    needles = [f'"{n}"' for n in names if n and n.isascii() and n.isprintable() and not set(n) & set('"\\')]
    return [r for r in records if all(x in (r.record_json or r.digest or "") for x in needles)]


def _row(key: tuple[str, str], stats: YieldStats, provisioned: int, tests: int, hours: float) -> dict[str, Any]:
    return {
        "site_id": key[0],
        "fixture_id": key[1] or None,
        "provisioned": provisioned,
        "throughput_per_hour": figure.throughput_per_hour(provisioned, hours),
        "tests": tests,
        "yield": stats.to_dict(),
    }


def _add(a: YieldStats, b: YieldStats) -> YieldStats:
    return YieldStats(
        a.units + b.units,
        a.tests + b.tests,
        a.first_pass + b.first_pass,
        a.final_pass + b.final_pass,
        a.retested + b.retested,
    )


def stations(
    inst: Instance, *, since: datetime | None = None, until: datetime | None = None, site_id: str | None = None
) -> dict[str, Any]:
    """Per fixture and per site (line): units provisioned, throughput, tests, first-pass and final
    yield, retest rate over the window; and the failure Pareto of the scope."""
    since, until = _window(inst, since, until)
    dashboard_queries.refresh(inst)
    scope = Scope(since, until, site_id=site_id)
    hours = (until - since).total_seconds() / 3600
    with inst.db.read() as s:
        yields = station_windows.yield_by_fixture(s, scope)
        made = station_windows.counts_by_fixture(s, scope, "unit.provisioned")
        tests = station_windows.counts_by_fixture(s, scope, "test.recorded")
        pareto = windows.pareto(s, scope)
    keys = sorted({k for k in (*yields, *made, *tests) if k[1]})
    empty = YieldStats(0, 0, 0, 0, 0)
    fixtures = [_row(k, yields.get(k, empty), made.get(k, 0), tests.get(k, 0), hours) for k in keys]
    lines: dict[str, list[Any]] = {}
    for k in keys:
        acc = lines.setdefault(k[0], [empty, 0, 0])
        acc[0], acc[1], acc[2] = _add(acc[0], yields.get(k, empty)), acc[1] + made.get(k, 0), acc[2] + tests.get(k, 0)
    return {
        "window": {"since": since.isoformat(), "until": until.isoformat(), "hours": hours},
        "site_id": site_id,
        "fixtures": fixtures,
        "lines": [_row((site, ""), acc[0], acc[1], acc[2], hours) for site, acc in sorted(lines.items())],
        "failures": pareto,
    }


def distribution(
    inst: Instance,
    *,
    phase: str,
    name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
    bins: int = 30,
) -> dict[str, Any]:
    """A measurement's histogram against its limits, from the newest ``SAMPLE`` records of the scope."""
    since, until = _window(inst, since, until)
    with inst.db.read() as s:
        records = station_windows.newest_records(s, since, until, site_id=site_id, fixture_id=fixture_id, limit=SAMPLE)
    parsed = [p for p in (_parsed(r, (phase, name)) for r in _naming(records, phase, name)) if p is not None]
    values, lower, upper = samples.values_of(parsed, phase, name)
    found = samples.histogram(phase, name, values, lower, upper, bins)
    capability = samples.capabilities([([], [(phase, name, "", v, lower, upper) for v in values])])
    return {
        **found.to_dict(),
        "records_read": len(records),
        "sample_limit": SAMPLE,
        # The range held at least as many records as were read: the figures are of its newest ones only.
        "sampled": len(records) >= SAMPLE,
        "capability": capability[0].to_dict() if capability else None,
    }


def failing_units(
    inst: Instance,
    *,
    phase: str,
    measurement: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
) -> dict[str, Any]:
    """The units whose records failed a step (a measurement of a phase, or the phase itself), newest first."""
    since, until = _window(inst, since, until)
    with inst.db.read() as s:
        records = station_windows.newest_records(
            s,
            since,
            until,
            site_id=site_id,
            fixture_id=fixture_id,
            failed_only=True,
            limit=FAILING_SCAN,
            digest="failed_steps",
        )
    hits = []
    for r in reversed(_naming(records, phase, measurement)):
        if _failed_step(r, phase, measurement):
            hits.append(
                {
                    "serial": r.serial,
                    "record_id": r.id,
                    "fixture_id": r.fixture_id,
                    "site_id": r.site_id,
                    "outcome": r.outcome,
                    "received_at": r.received_at.isoformat(),
                }
            )
            if len(hits) >= FAILING_SHOWN:
                break
    return {
        "phase": phase,
        "measurement": measurement,
        "units": hits,
        "records_read": len(records),
        "scan_limit": FAILING_SCAN,
        # Only the range's newest ``scan_limit`` failed records were searched: older failures are not listed.
        "sampled": len(records) >= FAILING_SCAN,
    }
