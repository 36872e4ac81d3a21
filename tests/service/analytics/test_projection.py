"""The analytics projector: its tables are exactly the fold of the event log, however it gets there.

The reference is computed here from the raw events and test records with the pure batch functions;
the projector must agree with it after a real line with attacks, with tiny batches whose state goes
through the database every time, after a failure in the middle of a batch, with several projectors
(two engines, as two processes) racing, and after a projector process is killed mid-work. In each
of those, every hour rollup must be its minute rollup summed per hour (``projected`` checks it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fabguard.analytics import EventFact, MeasuredValue, TestFact, YieldStats, detect_all, unit_yield
from fabguard.analytics.fold import COUNTED_KINDS, Detectors
from fabguard.domain.testrecord import parse_openhtf_record
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.service.analytics import dashboard_queries, projection
from fabguard.service.core.instance import Instance
from fabguard.store import alert_rows, rollups
from fabguard.store.analytics_models import (
    AlertRow,
    AnalyticsState,
    FailureHour,
    FailureMinute,
    StatsHour,
    StatsMinute,
    StatsTotal,
    YieldHour,
    YieldMinute,
)
from fabguard.store.models import Event, Fixture, TestRecordRow
from tests.support import World

ROOT = Path(__file__).resolve().parents[3]  # the repository (tests/service/analytics/ is three below it)


def run_line(world: World, *, units: int = 24, quota: int = 20, seed: int = 3) -> None:
    """A line that overproduces, clones, skips tests and retests failures, at two fixtures."""
    order = world.order(quota=quota, order_id=f"po-{seed}")
    creds = [world.credentials(f"fx-{seed}-{i}") for i in range(2)]
    config = LineConfig(order_id=order, units=units, fail_rate=0.3, clones=2, skip_tests=2, seed=seed)
    with ProductionLine(creds, config) as line:
        line.run()


def facts(inst: Instance) -> tuple[list[EventFact], list[TestFact], dict[str, str]]:
    with inst.db.read() as s:
        sites = dict(s.execute(select(Fixture.id, Fixture.site_id)).all())
        events = [
            EventFact(e.seq, e.at, e.kind, e.order_id, e.fixture_id, e.serial, e.code, json.loads(e.detail))
            for e in s.execute(select(Event).order_by(Event.seq)).scalars()
        ]
        records = {r.id: r for r in s.execute(select(TestRecordRow)).scalars()}
    tests = []
    for e in events:
        if e.kind == "test.recorded":
            r = records[e.detail["record_id"]]
            parsed = parse_openhtf_record(json.loads(r.record_json))
            values = tuple(MeasuredValue(m.phase, m.name, m.value, m.lower, m.upper) for m in parsed.measurements)
            tests.append(TestFact(r.id, r.serial, r.fixture_id, r.outcome, r.received_at, values, e.seq, e.site_id))
    return events, tests, sites


def reference(inst: Instance) -> dict[str, Any]:
    """What the projection must hold, from the raw log with the batch functions."""
    events, tests, sites = facts(inst)
    totals: Counter[tuple[str, ...]] = Counter()
    for e in events:
        if e.kind in COUNTED_KINDS:
            code = str(e.detail.get("outcome")) if e.kind == "test.recorded" else (e.code or "")
            site = e.site_id or sites.get(e.fixture_id or "", "")
            totals[(e.kind, code, site, e.order_id or "", e.fixture_id or "")] += 1
    first_order: dict[str, str] = {}
    for e in events:
        if e.kind == "unit.provisioned" and e.serial and e.order_id:
            first_order.setdefault(e.serial, e.order_id)
    outcomes = [(t.serial, t.outcome) for t in tests]
    per_order = {
        order: unit_yield([(s, o) for s, o in outcomes if first_order.get(s) == order])
        for order in set(first_order.values())
    }
    detectors = Detectors.from_settings(dashboard_queries.load_settings(inst), sites)
    alerts = detect_all(
        events, tests, detectors=detectors.events, spike=detectors.spike, copies=detectors.copies, drift=detectors.drift
    )
    return {
        "totals": dict(totals),
        "yield": unit_yield(outcomes),
        "order_yield": per_order,
        "alerts": {a.id: (a.kind, a.count, a.severity, a.evidence, a.first_at, a.last_at, a.message) for a in alerts},
    }


HOUR_ROLLUPS = ((StatsMinute, StatsHour), (YieldMinute, YieldHour), (FailureMinute, FailureHour))


def _summed(s: Any, model: Any, unit: str, per: int) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """A rollup's rows as (time // per, *dimensions) -> counts, summed; rows whose counts are all 0 (a
    unit's move to its order can cancel one out) are left out, as absent rows are the same zeros."""
    table = model.__table__
    dims = [c.name for c in table.primary_key.columns if c.name != unit]
    counts = [c.name for c in table.columns if not c.primary_key]
    out: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for row in s.execute(select(table.c[unit], *(table.c[d] for d in dims), *(table.c[c] for c in counts))):
        key = (int(row[0]) // per, *row[1 : 1 + len(dims)])
        values = tuple(int(v) for v in row[1 + len(dims) :])
        before = out.get(key, (0,) * len(counts))
        out[key] = tuple(a + b for a, b in zip(before, values, strict=True))
    return {k: v for k, v in out.items() if any(v)}


def check_hour_rollups(inst: Instance) -> None:
    """Each hour rollup holds exactly its minute rollup summed by ``minute // 60``."""
    with inst.db.read() as s:
        for minutes, hours in HOUR_ROLLUPS:
            by_hour = _summed(s, minutes, "minute", 60)
            assert by_hour, f"{minutes.__tablename__} is empty: nothing to compare"
            assert _summed(s, hours, "hour", 1) == by_hour, hours.__tablename__


def projected(inst: Instance) -> dict[str, Any]:
    """What the projection holds, to compare with ``reference``; checks the hour rollups on the way."""
    check_hour_rollups(inst)
    with inst.db.read() as s:
        totals = {
            (r.kind, r.code, r.site_id, r.order_id, r.fixture_id): r.n
            for r in s.execute(select(StatsTotal)).scalars()
            if r.n
        }
        t = YieldMinute.__table__
        cols = (t.c.units, t.c.tests, t.c.first_pass, t.c.final_pass, t.c.retested)
        everything = YieldStats(
            *(int(x) for x in s.execute(select(*(func.coalesce(func.sum(c), 0) for c in cols))).one())
        )
        per_order = {
            order: YieldStats(*(int(x) for x in rest))
            for order, *rest in s.execute(select(t.c.order_id, *(func.sum(c) for c in cols)).group_by(t.c.order_id))
            if order
        }
        alerts = {
            r.id: (r.kind, r.count, r.severity, tuple(json.loads(r.evidence)), r.first_at, r.last_at, r.message)
            for r in s.execute(select(AlertRow)).scalars()
        }
    return {"totals": totals, "yield": everything, "order_yield": per_order, "alerts": alerts}


def caught_up(inst: Instance) -> None:
    assert dashboard_queries.refresh(inst, max_events=None) == 0


def test_projection_equals_the_fold_of_the_log_after_a_line_with_attacks(any_world: World) -> None:
    run_line(any_world)
    inst = any_world.inst
    caught_up(inst)
    want, got = reference(inst), projected(inst)
    assert got == want
    kinds = {v[0] for v in got["alerts"].values()}
    assert {"quota_overrun", "key_reused", "untested_unit"} <= kinds
    assert got["yield"].retested > 0 and got["yield"].first_pass < got["yield"].units  # the line retested
    assert sum(y.units for y in got["order_yield"].values()) == sum(
        n for k, n in got["totals"].items() if k[0] == "unit.provisioned"
    )


def test_tiny_batches_through_the_database_give_the_same_tables(world: World) -> None:
    """State saved and reloaded every 7 events (as when processes take turns) changes nothing."""
    run_line(world, seed=5)
    inst = world.inst
    world.server.stop()  # no background projector from here on
    _reset(inst)
    settings = dashboard_queries.load_settings(inst)
    while True:
        projection.forget_memory(inst)  # as if another process had moved the cursor
        if projection.advance(inst, settings, max_events=7, batch=7).events == 0:
            break
    assert projected(inst) == reference(inst)


def test_a_failure_mid_batch_rolls_back_and_the_retry_counts_once(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_line(any_world, seed=7)
    inst = any_world.inst
    any_world.server.stop()
    calls = {"n": 0}
    real = alert_rows.write_alerts

    def flaky(s: Any, changed: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(s, changed)

    monkeypatch.setattr(alert_rows, "write_alerts", flaky)
    settings = dashboard_queries.load_settings(inst)
    # Rewind: the server's projector may already have folded the line.
    _reset(inst)
    with pytest.raises(RuntimeError, match="disk full"):
        projection.advance(inst, settings, batch=10)
    assert calls["n"] == 2
    projection.advance(inst, settings, batch=10)
    assert projected(inst) == reference(inst)


def _reset(inst: Instance) -> None:
    projection.reset(inst)
    with inst.db.read() as s:
        assert rollups.read_cursor(s) == 0
        for model in rollups.PROJECTED:
            if model is not AnalyticsState:
                assert s.execute(select(func.count()).select_from(model)).scalar_one() == 0, model


def test_racing_projectors_on_separate_engines_fold_each_event_once(any_world: World) -> None:
    """Four projectors, each with its own engine (as four server processes), while the line runs."""
    inst = any_world.inst
    others = [Instance.open(inst.home) for _ in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def project(i: Instance) -> None:
        settings = dashboard_queries.load_settings(i)
        try:
            while not stop.is_set():
                projection.advance(i, settings, batch=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=project, args=(i,)) for i in (inst, *others)]
    for t in threads:
        t.start()
    try:
        run_line(any_world, seed=11)
        projection.reset(inst)  # a rebuild while they fold: they start again from nothing
        run_line(any_world, seed=12)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert not errors
        caught_up(inst)
        assert projected(inst) == reference(inst)
    finally:
        for o in others:
            o.close()


KILLED_PROJECTOR = """
import sys
from pathlib import Path
from fabguard.service.analytics import dashboard_queries, projection
from fabguard.service.core.instance import Instance
inst = Instance.open(Path(sys.argv[1]))
settings = dashboard_queries.load_settings(inst)
while True:
    done = projection.advance(inst, settings, max_events=3, batch=3)
    print(done.cursor, flush=True)
    if not done.events:
        break
"""


def test_a_projector_killed_mid_work_leaves_a_consistent_prefix(any_world: World) -> None:
    run_line(any_world, units=40, quota=40, seed=13)
    inst = any_world.inst
    any_world.server.stop()
    _reset(inst)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with inst.db.read() as s:
        total = int(s.execute(select(func.max(Event.seq))).scalar_one())
    killed_at = []
    for batches in (4, 9):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_PROJECTOR, str(inst.home)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(batches):
            proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)  # lands somewhere in the next batch
        proc.wait()
        with inst.db.read() as s:
            killed_at.append(rollups.read_cursor(s))
    assert killed_at[0] > 0 and killed_at[-1] < total, f"the kills missed the work: {killed_at} of {total}"
    projection.forget_memory(inst)
    caught_up(inst)
    assert projected(inst) == reference(inst)


def test_capability_from_rollups_is_exact_for_a_measurement_far_from_zero(any_world: World) -> None:
    """A 2.4 GHz carrier measured to about 1 Hz: sums of squares of raw values would lose sigma
    entirely (their rounding is ~1e6 Hz^2); the rollups keep sums about a reference, and rows folded
    in separate batches (with separate references) merge exactly, in SQL and in the query."""
    from fabguard.fixture.openhtf_records import MeasurementSpec, openhtf_record

    carrier = (MeasurementSpec("radio", "carrier_hz", 2.402e9, 1.0, 2.402e9 - 50, 2.402e9 + 50, "Hz"),)
    spurs = (
        MeasurementSpec("radio", "spur_dbc", -60.0, 0.5, -80.0, -45.0, "dBc"),
        MeasurementSpec("radio", "offset_hz", 1.0e7, 0.25, 1.0e7 - 5, 1.0e7 + 5, "Hz"),
    )
    client = any_world.fixture("f1")
    rng = random.Random(4)
    records = [openhtf_record(f"SN{i:07d}", "f1", fail=False, rng=rng, procedure=carrier + spurs) for i in range(40)]
    settings = dashboard_queries.load_settings(any_world.inst)
    for chunk in (records[:7], records[7:19], records[19:]):
        client.upload_test_records(chunk)
        projection.advance(any_world.inst, settings, batch=3)  # rows of one hour, folded in many batches
    values: dict[str, list[float]] = {}
    for r in records:
        for phase in r["phases"]:
            for name, m in phase["measurements"].items():
                values.setdefault(name, []).append(m["measured_value"])
    figures = dashboard_queries.production(any_world.inst, site_id="cm-a")
    got = {c["name"]: c for c in figures["capability"]}
    assert set(got) == {"carrier_hz", "spur_dbc", "offset_hz"}
    for name, vs in values.items():
        assert got[name]["n"] == len(vs)
        assert got[name]["mean"] == pytest.approx(statistics.fmean(vs), rel=1e-12)
        assert got[name]["sigma"] == pytest.approx(statistics.stdev(vs), rel=1e-6), name
