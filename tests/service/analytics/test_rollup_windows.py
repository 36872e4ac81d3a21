"""Window sums read whole hours from the hour rollups and the edges from the minute rollups: the
figures must be exactly those of the raw events and test records, for any window and filter.

A clock that steps about a minute and a half per call spreads a real production line over many hours
and crosses minute and hour boundaries irregularly; the reference is computed here in Python from the
raw log, with the documented window rule: an event or record counts when its minute
(``floor(at / 60 s)``) lies in ``[floor(since / 60 s), ceil(until / 60 s))``.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from fabguard.analytics import unit_yield
from fabguard.domain.testrecord import parse_openhtf_record
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.service.analytics import dashboard_queries
from fabguard.service.catalog import orders, product_catalog
from fabguard.store.models import Event, Fixture, TestRecordRow
from tests.support import World

STEP = timedelta(seconds=97, microseconds=250_000)
COUNTED = ("unit.provisioned", "unit.refused", "request.refused", "test.refused", "test.recorded")
REFUSALS = ("unit.refused", "test.refused", "request.refused")
PASS = "PASS"
# The orders of ``run_lines``, each the only order at its site.
SOLE_ORDER_SITES = {"po-a": "cm-a", "po-b": "cm-b"}


class SteppingClock:
    """A thread-safe clock that moves ``STEP`` forward on every call (the server's threads call it)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += STEP
            return self._now


def minute(at: datetime) -> int:
    return math.floor(at.timestamp() / 60)


@dataclass
class Unit:
    """A serial as the yield counts it: where and when first tested, its outcomes, its order."""

    first_minute: int
    site: str
    fixture: str
    outcomes: list[str] = field(default_factory=list)
    order: str | None = None


@dataclass
class Log:
    """The raw log, reduced to what the window figures count."""

    counted: list[tuple[int, str, str, str, str, str]]  # minute, kind, code, site, order, fixture
    units: dict[str, Unit]
    failures: list[tuple[int, str, str, str, str]]  # minute, site, fixture, phase, measurement
    products: dict[str, tuple[str, ...]]  # product -> its orders


def read_log(world: World) -> Log:
    with world.inst.db.read() as s:
        sites = dict(s.execute(select(Fixture.id, Fixture.site_id)).all())
        events = list(s.execute(select(Event).order_by(Event.seq)).scalars())
        records = {r.id: r for r in s.execute(select(TestRecordRow)).scalars()}
    products: dict[str, list[str]] = {}
    for view in orders.list_orders(world.inst):
        products.setdefault(view.product_id, []).append(view.id)
    counted, failures = [], []
    units: dict[str, Unit] = {}
    for e in events:
        detail = json.loads(e.detail)
        site = detail.get("site_id") if isinstance(detail.get("site_id"), str) else None
        if e.kind in COUNTED:
            code = str(detail["outcome"]) if e.kind == "test.recorded" else (e.code or "")
            where = site or sites.get(e.fixture_id or "", "")
            counted.append((minute(e.at), e.kind, code, where, e.order_id or "", e.fixture_id or ""))
        if e.kind == "unit.provisioned" and e.serial and e.order_id:
            unit = units.get(e.serial)
            if unit is not None and unit.order is None:  # a unit counts for the first order it is provisioned on
                unit.order = e.order_id
        if e.kind != "test.recorded":
            continue
        r = records[detail["record_id"]]
        at = minute(r.received_at)
        unit = units.setdefault(r.serial, Unit(at, site or "", r.fixture_id))
        unit.outcomes.append(r.outcome)
        parsed = parse_openhtf_record(json.loads(r.record_json))
        failed_in = set()
        for m in parsed.measurements:
            if m.outcome == "FAIL":
                failures.append((at, site or "", r.fixture_id, m.phase[:128], m.name[:128]))
                failed_in.add(m.phase)
        if parsed.outcome.value != PASS:  # a failed phase without a failed measurement counts as itself
            for phase in {p.name for p in parsed.phases if p.outcome not in (PASS, "SKIP")} - failed_in:
                failures.append((at, site or "", r.fixture_id, phase[:128], ""))
    return Log(counted, units, failures, {p: tuple(o) for p, o in products.items()})


def expected(
    log: Log,
    since: datetime,
    until: datetime,
    *,
    product_id: str | None = None,
    order_id: str | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
) -> dict[str, Any]:
    """What ``analytics.production`` must report for the window and filters, from the raw log."""
    lo, hi = math.floor(since.timestamp() / 60), math.ceil(until.timestamp() / 60)
    order_ids = log.products.get(product_id, ()) if product_id is not None else None

    def place(site: str, fixture: str) -> bool:
        return (site_id is None or site == site_id) and (fixture_id is None or fixture == fixture_id)

    def order_ok(order: str | None) -> bool:
        return (order_id is None or order == order_id) and (order_ids is None or order in order_ids)

    provisioned = 0
    outcomes: Counter[str] = Counter()
    refusals: dict[str, Counter[str]] = {}
    for m, kind, code, site, order, fixture in log.counted:
        if not (lo <= m < hi and place(site, fixture)):
            continue
        if kind == "unit.provisioned" and order_ok(order):
            provisioned += 1
        elif kind == "test.recorded":  # tests follow sites and fixtures, not orders
            outcomes[code] += 1
        elif kind in REFUSALS and order_ok(order):
            refusals.setdefault(kind, Counter())[code or "unknown"] += 1
    by_order = order_id is not None or product_id is not None

    def units_of(u: Unit) -> bool:
        """An order alone at its site also owns that site's units never provisioned (docs/figures.md)."""
        if order_id is not None and product_id is None and u.order is None:
            return u.site == SOLE_ORDER_SITES.get(order_id)
        return not by_order or order_ok(u.order)

    tested = [
        (serial, outcome)
        for serial, u in log.units.items()
        if lo <= u.first_minute < hi and place(u.site, u.fixture) and units_of(u)
        for outcome in u.outcomes
    ]
    failed = Counter(
        (phase, name) for m, site, fixture, phase, name in log.failures if lo <= m < hi and place(site, fixture)
    )
    total = sum(failed.values())
    pareto, running = [], 0
    for (phase, name), n in sorted(failed.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:10]:
        running += n
        pareto.append(
            {
                "phase": phase,
                "measurement": name or None,
                "failures": n,
                "share": n / total,
                "cumulative_share": running / total,
            }
        )
    return {
        "provisioned": provisioned,
        "tests": dict(sorted(outcomes.items())),
        "refusals": {kind: dict(codes) for kind, codes in refusals.items()},
        "yield": unit_yield(tested).to_dict(),
        "failures": pareto,
    }


def reported(world: World, since: datetime, until: datetime, **filters: str) -> dict[str, Any]:
    figures = dashboard_queries.production(world.inst, since=since, until=until, **filters)
    assert figures["lag"] == 0
    assert figures["tests"]["total"] == sum(figures["tests"]["by_outcome"].values())
    return {
        "provisioned": figures["provisioned"],
        "tests": figures["tests"]["by_outcome"],
        "refusals": figures["refusals"],
        "yield": figures["yield"],
        "failures": figures["failures"],
    }


def run_lines(world: World) -> None:
    """Two lines, one per site and product, with overproduction, clones, skipped tests, retests and a
    fixture of the wrong site, all on the stepping clock."""
    product_catalog.create_product(world.inst, product_id=ProductId("gadget"), name="Gadget", actor="test")
    order_a = world.order(quota=22, order_id="po-a")
    order_b = orders.create_order(
        world.inst,
        product_id=ProductId("gadget"),
        site_id=SiteId("cm-b"),
        quota=100,
        actor="test",
        order_id=OrderId("po-b"),
    ).id
    line_a = [world.credentials(f"fx-a-{i}") for i in range(2)]
    stray = world.credentials("fx-b-stray", site="cm-b")
    line_b = [world.credentials("fx-b-0", site="cm-b")]
    world.inst.clock = SteppingClock(datetime.now(UTC))
    config_a = LineConfig(
        order_id=order_a, units=26, fail_rate=0.35, clones=2, skip_tests=2, wrong_site_attempts=2, seed=21
    )
    with ProductionLine(line_a, config_a, wrong_site=stray) as line:
        line.run()
    with ProductionLine(line_b, LineConfig(order_id=order_b, units=14, fail_rate=0.35, seed=22)) as line:
        line.run()
    assert dashboard_queries.refresh(world.inst, max_events=None) == 0


def windows(log: Log) -> list[tuple[str, datetime, datetime]]:
    """Random windows (seeded), windows on whole hours, inside one hour, across one hour boundary
    without a whole hour, with seconds off the minute, and one covering everything."""
    minutes = [c[0] for c in log.counted]
    first, last = min(minutes) * 60, (max(minutes) + 1) * 60
    first_hour, last_hour = first // 3600, last // 3600 + 1

    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    out = [("everything", at(first - 3600), at(last + 3600))]
    rng = random.Random(2024)
    for i in range(30):
        a, b = sorted(rng.uniform(first - 1800, last + 1800) for _ in range(2))
        out.append((f"random {i}", at(a), at(b + 0.001)))
    for i in range(8):
        h = rng.randrange(first_hour, last_hour)
        out.append((f"hours {i}", at(h * 3600), at(rng.randrange(h + 1, last_hour + 1) * 3600)))
        out.append((f"one hour {i}", at(h * 3600), at(h * 3600 + 3600)))
        a, b = sorted(rng.uniform(h * 3600, h * 3600 + 3600) for _ in range(2))
        out.append((f"inside hour {i}", at(a), at(b + 0.001)))
        out.append(
            (f"across hour {i}", at(h * 3600 + rng.uniform(1, 3599)), at(h * 3600 + 3600 + rng.uniform(1, 3599)))
        )
        out.append((f"edges {i}", at(h * 3600 + 60.5), at((h + 2) * 3600 + 0.25)))
        out.append((f"sub-minute {i}", at(h * 3600 - 0.75), at(h * 3600 + 59.5)))
        out.append((f"just inside {i}", at(h * 3600 + 59.999), at((h + 1) * 3600 + 0.001)))
    return out


FILTERS: list[dict[str, str]] = [
    {},
    {"site_id": "cm-a"},
    {"site_id": "cm-b"},
    {"fixture_id": "fx-a-0"},
    {"fixture_id": "fx-b-stray"},
    {"order_id": "po-a"},
    {"order_id": "po-b"},
    {"product_id": "sensor"},
    {"product_id": "gadget"},
    {"order_id": "po-a", "fixture_id": "fx-a-1"},
    {"site_id": "cm-b", "fixture_id": "fx-b-0"},
]


def test_window_figures_equal_the_raw_log_for_any_window_and_filter(any_world: World) -> None:
    run_lines(any_world)
    log = read_log(any_world)
    hours = {m // 60 for m, *_ in log.counted}
    assert len(hours) >= 6, f"the line spans too few hours to test hour rollups: {sorted(hours)}"
    kinds = {c[1] for c in log.counted}
    assert {"unit.provisioned", "unit.refused", "test.recorded"} <= kinds
    assert log.failures and any(u.order is None for u in log.units.values())
    rng = random.Random(7)
    checked = 0
    for name, since, until in windows(log):
        everything = name == "everything" or name.startswith("hours")
        for filters in FILTERS if everything else [{}, rng.choice(FILTERS[1:])]:
            want = expected(log, since, until, **filters)
            assert reported(any_world, since, until, **filters) == want, (name, since, until, filters)
            checked += 1
    whole = expected(log, datetime.fromtimestamp(0, UTC), datetime.now(UTC) + timedelta(days=2))
    assert whole["provisioned"] > 0 and whole["refusals"] and whole["yield"]["retested"] > 0
    assert checked > 100
