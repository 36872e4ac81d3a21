"""Analytics benchmark: bulk-load test records (20 measurements each) and time every dashboard query.

    .venv/bin/python bench/analytics.py [--records 1000000] [--database-url postgresql+psycopg://...]

Loads a fresh instance (SQLite in a temporary directory, and PostgreSQL when a URL of an empty database
is given) with synthetic OpenHTF records over the past week from 8 fixtures at 2 sites, one
``test.recorded`` event per record and a ``unit.provisioned`` event per passing one. Records go in
through one batched executemany per 20,000 rows on SQLite and COPY on PostgreSQL. Then it times the
service functions the dashboard calls. Figures are for this machine only.

It prints the bulk-load rate of the store alone (inserting the records and their events, in records/s
and measurements/s; generating them in Python is timed apart). Dashboard queries read the analytics
projection (ADR 0005), so the bench then times the projector's catch-up over the whole load (what
``fabguard stats catch-up`` does after a bulk import) in measurement values/s, records/s and events/s,
and the two together as the ingest rate: measurements / (bulk load + catch-up). Then it times each
query twice: warm (nothing new since the last call) and live (a burst of new records and units lands
before every call, which the query folds in first, as on a running line). Median and worst of 5.

The bulk-loaded events have no Merkle leaves: the database is for reading, not for appending to.
What the product's own upload path costs (checks, canonical JSON, events with their Merkle leaves,
over HTTPS with client certificates) is timed by ``bench/ingest.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-passphrase-not-secret")

from fabguard.api.routes.dashboard import ProductionCollector  # noqa: E402
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId  # noqa: E402
from fabguard.fixture.openhtf_records import MeasurementSpec  # noqa: E402
from fabguard.ledger.entry import encode_entry  # noqa: E402
from fabguard.runtime import tune_gc  # noqa: E402
from fabguard.service.analytics import dashboard_queries, projection, stations  # noqa: E402
from fabguard.service.catalog import fixtures, orders, product_catalog  # noqa: E402
from fabguard.service.core.instance import Instance  # noqa: E402
from fabguard.service.core.seeding import init_instance  # noqa: E402
from fabguard.service.genealogy import unit_history  # noqa: E402
from fabguard.store.eventlog import EVENT_COUNTER, event_count  # noqa: E402
from fabguard.store.models import Counter, Event, TestRecordRow  # noqa: E402

BATCH = 20_000
SITES = ("cm-a", "cm-b")
FIXTURES = [(f"fx-{site}-{i}", site) for site in SITES for i in range(4)]
# 4 phases x 5 measurements: 20 per record.
PROCEDURE = tuple(
    MeasurementSpec(f"phase_{p}", f"m_{p}_{m}", 1.0 + p + m / 10, 0.01 * (m + 1), 0.9 + p, 1.6 + p, "V")
    for p in range(4)
    for m in range(5)
)


def record_json(serial: str, station: str, start_ms: int, fail: bool, rng: random.Random) -> str:
    """The OpenHTF JSON of one record, built as text (json.dumps of the nested dicts is 3x slower)."""
    phases = []
    for p in range(4):
        ms = []
        for spec in PROCEDURE[p * 5 : p * 5 + 5]:
            v = rng.gauss(spec.nominal, spec.sigma)
            ok = not fail and spec.lower <= v <= spec.upper
            ms.append(
                f'"{spec.name}":{{"measured_value":{v:.6f},"name":"{spec.name}","outcome":"{"PASS" if ok else "FAIL"}",'
                f'"units":{{"name":"V","suffix":"V"}},"validators":["{spec.lower} <= x <= {spec.upper}"]}}'
            )
        phases.append(
            f'{{"end_time_millis":{start_ms + 100},"measurements":{{{",".join(ms)}}},"name":"phase_{p}",'
            f'"outcome":"PASS","start_time_millis":{start_ms}}}'
        )
    outcome = "FAIL" if fail else "PASS"
    return (
        f'{{"dut_id":"{serial}","end_time_millis":{start_ms + 400},"outcome":"{outcome}","phases":[{",".join(phases)}],'
        f'"start_time_millis":{start_ms},"station_id":"{station}"}}'
    )


def make_instance(home: Path, url: str | None) -> Instance:
    init_instance(home, organization="Bench Devices", database_url=url)
    inst = Instance.open(home)
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="bench")
    for site in SITES:
        product_catalog.create_site(inst, site_id=SiteId(site), name=site, actor="bench")
    for fixture_id, site in FIXTURES:
        fixtures.create_fixture(inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(site), actor="bench")
    for site in SITES:
        orders.create_order(
            inst,
            product_id=ProductId("sensor"),
            site_id=SiteId(site),
            quota=10_000_000,
            actor="bench",
            order_id=OrderId(f"po-{site}"),
        )
    return inst


def generate(n: int, now: datetime) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per record: its row and its events (without seq), spread evenly over the past week."""
    rng = random.Random(1)
    span = timedelta(days=7)
    for i in range(n):
        at = now - span + span * (i / n)
        fixture_id, site = FIXTURES[i % len(FIXTURES)]
        serial = f"SN{i:010d}"
        fail = rng.random() < 0.03
        outcome = "FAIL" if fail else "PASS"
        start_ms = int(at.timestamp() * 1000)
        row = {
            "id": i + 1,
            "serial": serial,
            "fixture_id": fixture_id,
            "site_id": site,
            "declared_station_id": fixture_id,
            "outcome": outcome,
            "start_ms": start_ms,
            "end_ms": start_ms + 400,
            "measurement_count": len(PROCEDURE),
            "received_at": at,
            "record_json": record_json(serial, fixture_id, start_ms, fail, rng),
        }
        evs = [
            {
                "at": at,
                "kind": "test.recorded",
                "actor": f"fixture:{fixture_id}",
                "order_id": None,
                "fixture_id": fixture_id,
                "serial": serial,
                "code": None,
                "detail": {
                    "outcome": outcome,
                    "record_id": i + 1,
                    "site_id": site,
                    "station_id": fixture_id,
                    "declared_station_id": fixture_id,
                },
            }
        ]
        if not fail:
            evs.append(
                {
                    "at": at,
                    "kind": "unit.provisioned",
                    "actor": f"fixture:{fixture_id}",
                    "order_id": f"po-{site}",
                    "fixture_id": fixture_id,
                    "serial": serial,
                    "code": None,
                    "detail": {"cert_serial": f"{i:040x}", "site_id": site},
                }
            )
        yield row, evs


def event_row(seq: int, e: dict[str, Any]) -> dict[str, Any]:
    return {
        **e,
        "seq": seq,
        "detail": json.dumps(e["detail"], sort_keys=True, separators=(",", ":")),
        "entry": encode_entry(seq=seq, **e),
    }


COPY_RECORDS = "COPY test_records (id, serial, fixture_id, site_id, declared_station_id, outcome, start_ms, end_ms, measurement_count, received_at, record_json) FROM STDIN"
COPY_EVENTS = "COPY events (seq, at, kind, actor, order_id, fixture_id, serial, code, detail, entry) FROM STDIN"
RECORD_COLS = (
    "id",
    "serial",
    "fixture_id",
    "site_id",
    "declared_station_id",
    "outcome",
    "start_ms",
    "end_ms",
    "measurement_count",
)
EVENT_COLS = ("seq", "at", "kind", "actor", "order_id", "fixture_id", "serial", "code", "detail", "entry")


def load(inst: Instance, n: int) -> dict[str, float]:
    """Bulk-load n records and their events; returns timings."""
    now = inst.clock()
    with inst.db.read() as s:
        seq = event_count(s)
    first_seq = seq
    gen_s = rec_s = ev_s = 0.0
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    postgres = not inst.db.is_sqlite

    def flush() -> None:
        nonlocal rec_s, ev_s
        t = time.perf_counter()
        if postgres:
            raw = inst.db.engine.raw_connection()
            try:
                cur: Any = raw.cursor()
                with cur.copy(COPY_RECORDS) as copy:
                    for r in rows:
                        copy.write_row([*(r[c] for c in RECORD_COLS), r["received_at"], r["record_json"]])
                raw.commit()
                t2 = time.perf_counter()
                rec_s += t2 - t
                with cur.copy(COPY_EVENTS) as copy:
                    for e in events:
                        copy.write_row([e[c] for c in EVENT_COLS])
                raw.commit()
                ev_s += time.perf_counter() - t2
            finally:
                raw.close()
        else:
            with inst.db.transaction() as s:
                s.execute(insert(TestRecordRow), rows)
            t2 = time.perf_counter()
            rec_s += t2 - t
            with inst.db.transaction() as s:
                s.execute(insert(Event), events)
            ev_s += time.perf_counter() - t2
        rows.clear()
        events.clear()

    t = time.perf_counter()
    for row, evs in generate(n, now):
        rows.append(row)
        for e in evs:
            seq += 1
            events.append(event_row(seq, e))
        if len(rows) >= BATCH:
            gen_s += time.perf_counter() - t
            flush()
            t = time.perf_counter()
    gen_s += time.perf_counter() - t
    if rows:
        flush()
    with inst.db.transaction() as s:
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=seq))
    if postgres:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('test_records', 'id'), %(n)s)", {"n": n})
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return {"generate_s": gen_s, "records_s": rec_s, "events_s": ev_s, "events": seq - first_seq}


def timed(fn: Callable[[], object], before: Callable[[], object] | None = None, rounds: int = 5) -> tuple[float, float]:
    """Median and worst time of ``fn``, with ``before`` run (untimed) ahead of each call."""
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), max(times)


def burst(inst: Instance, n: int, offset: int) -> Callable[[], object]:
    """A callable that appends ``n`` more records (and their events) as a running line would."""
    state = {"next": offset}

    def run() -> None:
        with inst.db.read() as s:
            seq = event_count(s)
        now = inst.clock()
        rows, events = [], []
        rng = random.Random(state["next"])
        for i in range(state["next"], state["next"] + n):
            fixture_id, site = FIXTURES[i % len(FIXTURES)]
            serial = f"LIVE{i:010d}"
            start_ms = int(now.timestamp() * 1000)
            rows.append(
                {
                    "id": i + 1,
                    "serial": serial,
                    "fixture_id": fixture_id,
                    "site_id": site,
                    "declared_station_id": fixture_id,
                    "outcome": "PASS",
                    "start_ms": start_ms,
                    "end_ms": start_ms + 400,
                    "measurement_count": len(PROCEDURE),
                    "received_at": now,
                    "record_json": record_json(serial, fixture_id, start_ms, False, rng),
                }
            )
            for kind, order, detail in (
                ("test.recorded", None, {"outcome": "PASS", "record_id": i + 1, "site_id": site}),
                ("unit.provisioned", f"po-{site}", {"site_id": site}),
            ):
                seq += 1
                e = {"at": now, "kind": kind, "actor": f"fixture:{fixture_id}", "order_id": order}
                e |= {"fixture_id": fixture_id, "serial": serial, "code": None, "detail": detail}
                events.append(event_row(seq, e))
        with inst.db.transaction() as s:
            s.execute(insert(TestRecordRow), rows)
            s.execute(insert(Event), events)
            s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=seq))
        state["next"] += n

    return run


def queries(inst: Instance) -> dict[str, Callable[[], object]]:
    collector = ProductionCollector(inst)
    return {
        "current_sequence (stream poll)": lambda: dashboard_queries.current_sequence(inst),
        "overview (page, stream snapshot)": lambda: dashboard_queries.overview(inst),
        "order_stats (order page)": lambda: dashboard_queries.order_stats(inst, "po-cm-a"),
        "production, a week (stats)": lambda: dashboard_queries.production(
            inst, since=inst.clock() - timedelta(days=7)
        ),
        "overview, a week (range picker)": lambda: dashboard_queries.overview(
            inst, since=inst.clock() - timedelta(days=7), until=inst.clock()
        ),
        "overview, one site (operator)": lambda: dashboard_queries.overview(inst, site_id="cm-a"),
        "stations, a week": lambda: stations.stations(inst, since=inst.clock() - timedelta(days=7)),
        "distribution, a week": lambda: stations.distribution(
            inst, phase="phase_0", name="m_0_0", since=inst.clock() - timedelta(days=7)
        ),
        "failing units, a week": lambda: stations.failing_units(
            inst, phase="phase_0", measurement="m_0_0", since=inst.clock() - timedelta(days=7)
        ),
        "unit search (prefix)": lambda: unit_history.search(inst, "SN00000012"),
        "alerts (alert list, ack)": lambda: dashboard_queries.alerts(inst),
        "metrics (Prometheus scrape)": lambda: list(collector.collect()),
    }


def run(label: str, url: str | None, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inst = make_instance(Path(tmp) / "home", url)
        try:
            loaded = load(inst, n)
            measurements = n * len(PROCEDURE)
            print(f"\n{label}: {n:,} records, {measurements:,} measurements, {loaded['events']:,.0f} events")
            print(f"  generate (Python, not the store)   {loaded['generate_s']:8.1f} s")
            print(
                f"  insert test records                {loaded['records_s']:8.1f} s  "
                f"{measurements / loaded['records_s']:>12,.0f} measurements/s  {n / loaded['records_s']:>9,.0f} records/s"
            )
            print(
                f"  insert events                      {loaded['events_s']:8.1f} s  "
                f"{loaded['events'] / loaded['events_s']:>12,.0f} events/s"
            )
            stored = loaded["records_s"] + loaded["events_s"]
            print(
                f"  bulk load (storage: both)          {stored:8.1f} s  "
                f"{measurements / stored:>12,.0f} measurements/s  {n / stored:>9,.0f} records/s"
            )
            if inst.db.is_sqlite:
                size = sum(p.stat().st_size for p in (Path(tmp) / "home").glob("fabguard.db*"))
                print(f"  database size                      {size / 2**30:8.2f} GiB")
            t = time.perf_counter()
            folded = projection.advance(inst, dashboard_queries.load_settings(inst)).events
            took = time.perf_counter() - t
            print(
                f"  projection catch-up                {took:8.1f} s  {measurements / took:>12,.0f} measurements/s  "
                f"{n / took:>9,.0f} records/s  {folded / took:>9,.0f} events/s"
            )
            print(
                f"  ingest (bulk load + catch-up)      {stored + took:8.1f} s  "
                f"{measurements / (stored + took):>12,.0f} measurements/s  {n / (stored + took):>9,.0f} records/s"
            )
            live = burst(inst, 20, n + 1_000_000)
            print(f"  {'query':<34} {'warm median/worst':>20}   {'live median/worst':>20}")
            for name, fn in queries(inst).items():
                warm, warm_max = timed(fn)
                hot, hot_max = timed(fn, live)
                verdict = "ok" if max(warm_max, hot_max) < 0.2 else "OVER 200 ms"
                print(
                    f"  {name:<34} {warm * 1000:8.1f} /{warm_max * 1000:8.1f} ms "
                    f"{hot * 1000:8.1f} /{hot_max * 1000:8.1f} ms  {verdict}"
                )
        finally:
            inst.close()


def main() -> None:
    tune_gc()  # as the server processes (whose projector folds) and ``fabguard stats catch-up`` do
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database, for a second run")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL run")
    args = parser.parse_args()
    if not args.no_sqlite:
        run("SQLite", None, args.records)
    if args.database_url:
        run("PostgreSQL", args.database_url, args.records)


if __name__ == "__main__":
    main()
