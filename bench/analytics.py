"""Analytics benchmark: bulk-load test records (20 measurements each) and time every dashboard query.

    .venv/bin/python bench/analytics.py [--records 1000000] [--database-url postgresql+psycopg://...]
        [--no-sqlite] [--home DIR [--load-only] [--as-of-last]] [--only REGEX]

``--home`` keeps the instance (a second run reuses it: catches up, then times the queries); ``--load-only``
stops before the catch-up (or, over a kept instance with fewer records, loads on up to ``--records``);
``--as-of-last`` times a kept instance as of a minute after its last record.

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
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-passphrase-not-secret")

from fabguard.analytics import record_digest  # noqa: E402
from fabguard.api.routes.dashboard import ProductionCollector  # noqa: E402
from fabguard.domain.testrecord import stored_rows  # noqa: E402
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId  # noqa: E402
from fabguard.fixture.openhtf_records import MeasurementSpec  # noqa: E402
from fabguard.ledger import merkle  # noqa: E402
from fabguard.ledger.entry import encode_entry  # noqa: E402
from fabguard.runtime import tune_gc  # noqa: E402
from fabguard.service.analytics import dashboard_queries, projection, stations  # noqa: E402
from fabguard.service.catalog import fixtures, orders, product_catalog  # noqa: E402
from fabguard.service.core.instance import Instance  # noqa: E402
from fabguard.service.core.seeding import init_instance  # noqa: E402
from fabguard.service.genealogy import unit_history  # noqa: E402
from fabguard.store.eventlog import EVENT_COUNTER  # noqa: E402
from fabguard.store.models import Counter, Event, LedgerNode, Order, RecordDigest, TestRecordRow, Unit  # noqa: E402

BATCH = 20_000
SITES = ("cm-a", "cm-b")
FIXTURES = [(f"fx-{site}-{i}", site) for site in SITES for i in range(4)]
# 4 phases x 5 measurements: 20 per record.
PROCEDURE = tuple(
    MeasurementSpec(f"phase_{p}", f"m_{p}_{m}", 1.0 + p + m / 10, 0.01 * (m + 1), 0.9 + p, 1.6 + p, "V")
    for p in range(4)
    for m in range(5)
)


DRAWN = (1, 2)  # the measurements whose values each record draws anew
POOL = 4096  # distinct measured bodies per outcome; each record draws one (see ``RecordBodies``)


class RecordBodies:
    """OpenHTF JSON bodies drawn from a pool: ``POOL`` passing and ``POOL`` failing sets of 20 values, made
    once, each a %-template for its times and for two values drawn per record (``m_0_1``, ``m_0_2``), so
    no two records measure the same vector (the copied-record detector would flag them). Formatting 20
    gaussian values per record was the loader's cost (10,000 records/s); a drawn body is one %-format.
    A failing body fails one measurement (its phase fails), drawn evenly among the other 18, so a step's
    failing units are about a twentieth of the failed records."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.passing = [self._phases(rng, None) for _ in range(POOL)]
        self.failing = [
            self._phases(rng, rng.choice([k for k in range(len(PROCEDURE)) if k not in DRAWN])) for _ in range(POOL)
        ]

    @staticmethod
    def _phases(rng: random.Random, failed: int | None) -> str:
        phases = []
        for p in range(4):
            ms = []
            for k, spec in enumerate(PROCEDURE[p * 5 : p * 5 + 5], start=p * 5):
                v = spec.upper + 3 * spec.sigma if k == failed else rng.gauss(spec.nominal, spec.sigma)
                ok = k in DRAWN or spec.lower <= v <= spec.upper
                value = f"%(v{k})s" if k in DRAWN else f"{v:.6f}"
                ms.append(
                    f'"{spec.name}":{{"measured_value":{value},"name":"{spec.name}","outcome":"{"PASS" if ok else "FAIL"}",'
                    f'"units":{{"name":"V","suffix":"V"}},"validators":["{spec.lower} <= x <= {spec.upper}"]}}'
                )
            outcome = "FAIL" if failed is not None and failed // 5 == p else "PASS"
            phases.append(
                f'{{"end_time_millis":%(e)d,"measurements":{{{",".join(ms)}}},"name":"phase_{p}",'
                f'"outcome":"{outcome}","start_time_millis":%(s)d}}'
            )
        return ",".join(phases)

    def json(self, serial: str, station: str, start_ms: int, fail: bool) -> str:
        pool = self.failing if fail else self.passing
        rng, (a, b) = self.rng, (PROCEDURE[k] for k in DRAWN)
        a_value = min(max(rng.gauss(a.nominal, a.sigma), a.lower), a.upper)
        b_value = min(max(rng.gauss(b.nominal, b.sigma), b.lower), b.upper)
        values = {"s": start_ms, "e": start_ms + 100, "v1": f"{a_value:.9f}", "v2": f"{b_value:.9f}"}
        phases = pool[rng.randrange(POOL)] % values
        return (
            f'{{"dut_id":"{serial}","end_time_millis":{start_ms + 400},"outcome":"{"FAIL" if fail else "PASS"}",'
            f'"phases":[{phases}],"start_time_millis":{start_ms},"station_id":"{station}"}}'
        )


SPAN = timedelta(days=7)  # the records are spread evenly over the past week
PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    + "\n".join(["MIIBszCCAVmgAwIBAgIUBenchBenchBenchBenchBenchBenchBenchBenchBench"] * 9)
    + "\n-----END CERTIFICATE-----\n"
)  # a PEM's size: the loaded units are for reading, never verified


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
            quota=100_000_000,
            actor="bench",
            order_id=OrderId(f"po-{site}"),
        )
    # The orders ran the whole week the records cover (the range picker's "order lifetime" is that week).
    with inst.db.transaction() as s:
        s.execute(update(Order).values(created_at=inst.clock() - SPAN - timedelta(hours=1)))
    return inst


class Loader:
    """Writes records as the server stores them: the test record, its ``test.recorded`` event and, for a
    passing one, the unit (``units``) and its ``unit.provisioned`` event, every event with its Merkle
    nodes (``ledger_nodes``: each complete subtree, as the event log stores them), so genealogy's
    inclusion proofs read a real tree. Bulk: one executemany per table per batch on SQLite, COPY on
    PostgreSQL. The analytics projection is then caught up by the projector itself (``run``)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.bodies = RecordBodies(random.Random(1))
        self.rng = random.Random(2)
        self.tree = merkle.CompactRange()
        with inst.db.read() as s:
            entries = select(Event.entry).order_by(Event.seq).execution_options(yield_per=20_000)
            for (entry,) in s.execute(entries):  # streamed: a kept instance may hold tens of millions
                self.tree.push(merkle.leaf_hash(bytes(entry)))
            # The events stored, not the counter: a load cut short may have stored a batch without it.
            self.seq = self.tree.size
        if self.seq > 1000:
            # A kept instance: draw new values. With the first load's seeds the live records of a reuse
            # (and a resumed load) were exact copies of the first records, each raising a
            # copied_test_record alert (9,045 in one reuse at 1.1M; the overview reads every alert).
            self.bodies.rng = random.Random(self.seq)
            self.rng = random.Random(self.seq + 1)
        self.batches: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self.write_s = 0.0
        self.units = 0

    def add(self, i: int, serial: str, at: datetime, fail: bool) -> None:
        fixture_id, site = FIXTURES[i % len(FIXTURES)]
        outcome = "FAIL" if fail else "PASS"
        start_ms = int(at.timestamp() * 1000)
        b = self.batches
        body = self.bodies.json(serial, fixture_id, start_ms, fail)
        failed_steps, measured = record_digest.digest(*stored_rows(json.loads(body)), fail)  # as the server writes them
        b["test_records"].append(
            {
                "id": i + 1, "serial": serial, "fixture_id": fixture_id, "site_id": site,
                "declared_station_id": fixture_id, "outcome": outcome, "start_ms": start_ms,
                "end_ms": start_ms + 400, "measurement_count": len(PROCEDURE), "received_at": at,
                "record_json": body,
            }
        )  # fmt: skip
        b["record_digests"].append({"record_id": i + 1, "measured": measured, "failed_steps": failed_steps})
        detail = {"outcome": outcome, "record_id": i + 1, "site_id": site, "station_id": fixture_id,
                  "declared_station_id": fixture_id}  # fmt: skip
        self._event(at, "test.recorded", fixture_id, serial, None, detail)
        if fail:
            return
        self.units += 1
        cert_serial, digest = f"{i + 1:040x}", f"{i + 1:064x}"
        b["units"].append(
            {
                "product_id": "sensor", "serial": serial, "order_id": f"po-{site}", "fixture_id": fixture_id,
                "key_fingerprint": f"{i + 1:063x}k", "cert_serial": cert_serial, "cert_sha256": digest,
                "certificate_pem": PEM, "issued_at": at, "issuing_ca": "issuing",
            }
        )  # fmt: skip
        detail = {"cert_serial": cert_serial, "cert_sha256": digest, "site_id": site}
        self._event(at, "unit.provisioned", fixture_id, serial, f"po-{site}", detail)

    def _event(self, at: datetime, kind: str, fixture_id: str, serial: str, order: str | None, detail: Any) -> None:
        self.seq += 1
        fields = {"at": at, "kind": kind, "actor": f"fixture:{fixture_id}", "order_id": order,
                  "fixture_id": fixture_id, "serial": serial, "code": None}  # fmt: skip
        entry = encode_entry(seq=self.seq, detail=detail, **fields)
        self.batches["events"].append(
            {**fields, "seq": self.seq, "detail": json.dumps(detail, sort_keys=True, separators=(",", ":")),
             "entry": entry}
        )  # fmt: skip
        self.batches["ledger_nodes"].extend(
            {"level": lv, "idx": ix, "hash": h} for lv, ix, h in self.tree.append(merkle.leaf_hash(entry))
        )

    def flush(self) -> None:
        t = time.perf_counter()
        inst = self.inst
        if inst.db.is_sqlite:
            with inst.db.transaction() as s:
                for name, rows in self.batches.items():
                    if rows:
                        s.execute(insert(TABLES[name]), rows)
                self._finish(s)
        else:
            raw = inst.db.engine.raw_connection()
            try:
                cur: Any = raw.cursor()
                for name, rows in self.batches.items():
                    if rows:
                        columns = list(rows[0])
                        with cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row([row[c] for c in columns])
                raw.commit()
            finally:
                raw.close()
            with inst.db.transaction() as s:
                self._finish(s)
        for rows in self.batches.values():
            rows.clear()
        self.write_s += time.perf_counter() - t

    def _finish(self, s: Any) -> None:
        """The counters the server keeps with the rows: the event sequence, each order's units used."""
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=self.seq))
        for site in SITES:
            used = select(func.count()).select_from(Unit).where(Unit.order_id == f"po-{site}").scalar_subquery()
            s.execute(update(Order).where(Order.id == f"po-{site}").values(used=used))


TABLES = {
    "test_records": TestRecordRow,
    "record_digests": RecordDigest,  # after its records (a foreign key)
    "units": Unit,
    "events": Event,
    "ledger_nodes": LedgerNode,
}


def load(inst: Instance, n: int, start: int = 0) -> tuple[Loader, dict[str, float]]:
    """Bulk-load records ``start..n-1`` (3% failed) with their units, events and Merkle nodes: spread
    over the past week, or, continuing a kept instance's load (``start`` > 0), from its last record's
    time until now."""
    now = inst.clock()
    loader = Loader(inst)
    first_seq = loader.seq
    fails = random.Random(3 + start)
    if start:
        with inst.db.read() as s:
            last = s.execute(select(func.max(TestRecordRow.received_at))).scalar_one()

        def at(i: int) -> datetime:
            return last + (now - last) * ((i - start + 1) / (n - start))
    else:

        def at(i: int) -> datetime:
            return now - SPAN + SPAN * (i / n)

    t0 = time.perf_counter()
    for i in range(start, n):
        loader.add(i, f"SN{i:010d}", at(i), fails.random() < 0.03)
        if len(loader.batches["test_records"]) >= BATCH:
            loader.flush()
        if (i + 1) % 100_000 == 0:
            print(f"  .. {i + 1:,} records in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    loader.flush()
    total = time.perf_counter() - t0
    settle(inst)
    stored = loader.write_s
    return loader, {"generate_s": total - stored, "stored_s": stored, "events": loader.seq - first_seq}


def settle(inst: Instance) -> None:
    """PostgreSQL: the records' id sequence past the loaded ids (COPY gave them), and fresh statistics;
    also run on a kept instance, whose load may have been cut short."""
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('test_records', 'id'), "
                "(SELECT coalesce(max(id), 0) + 1 FROM test_records), false)"
            )
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


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


def burst(loader: Loader, n: int, offset: int) -> Callable[[], object]:
    """A callable that appends ``n`` more records (3% failed) with their units, events and Merkle nodes
    as a running line would."""
    state = {"next": offset}
    fails = random.Random(offset)

    def run() -> None:
        now = loader.inst.clock()
        for i in range(state["next"], state["next"] + n):
            loader.add(i, f"LIVE{i:010d}", now, fails.random() < 0.03)
        loader.flush()
        state["next"] += n

    return run


def ranges_of(inst: Instance) -> dict[str, Callable[[], tuple[datetime | None, datetime | None]]]:
    """The range picker's ranges as (since, until) at the time of the call (shift: the default window)."""

    def ago(span: timedelta) -> Callable[[], tuple[datetime | None, datetime | None]]:
        return lambda: (inst.clock() - span, inst.clock())

    def order() -> tuple[datetime | None, datetime | None]:
        return orders.get_order(inst, "po-cm-a").created_at, inst.clock()

    def custom() -> tuple[datetime | None, datetime | None]:
        now = inst.clock()  # three days ending two days ago, off the hour at both ends
        return now - timedelta(days=5, minutes=-17), now - timedelta(days=2, minutes=-43)

    return {
        "hour": ago(timedelta(hours=1)),
        "shift": lambda: (None, None),
        "day": ago(timedelta(days=1)),
        "week": ago(timedelta(days=7)),
        "order": order,
        "custom": custom,
    }


def range_queries(inst: Instance, name: str, window: Callable[[], tuple[Any, Any]]) -> dict[str, Callable[[], object]]:
    """What the overview and the stations view ask over one range, as an engineer and as an operator."""
    m = {"phase": "phase_0"}
    fx = "fx-cm-a-1"

    def w(fn: Callable[..., object], **kw: Any) -> Callable[[], object]:
        def call() -> object:
            since, until = window()
            return fn(inst, since=since, until=until, **kw)

        return call

    return {
        f"{name}: overview": w(dashboard_queries.overview),
        f"{name}: overview, operator": w(dashboard_queries.overview, site_id="cm-a"),
        f"{name}: stations": w(stations.stations),
        f"{name}: stations, operator": w(stations.stations, site_id="cm-a"),
        f"{name}: production": w(dashboard_queries.production),
        f"{name}: production, a station": w(dashboard_queries.production, fixture_id=fx),
        f"{name}: production, operator": w(dashboard_queries.production, site_id="cm-a"),
        f"{name}: distribution": w(stations.distribution, name="m_0_0", **m),
        f"{name}: distribution, a station": w(stations.distribution, name="m_0_0", fixture_id=fx, **m),
        f"{name}: distribution, operator": w(stations.distribution, name="m_0_0", site_id="cm-a", **m),
        f"{name}: failing units": w(stations.failing_units, measurement="m_0_0", **m),
        f"{name}: failing units, a phase": w(stations.failing_units, measurement=None, **m),
        f"{name}: failing units, a station": w(stations.failing_units, measurement="m_0_0", fixture_id=fx, **m),
        f"{name}: failing units, operator": w(stations.failing_units, measurement="m_0_0", site_id="cm-a", **m),
    }


def queries(inst: Instance, n: int) -> dict[str, Callable[[], object]]:
    collector = ProductionCollector(inst)
    mid = f"SN{n // 2:010d}"
    found = {
        "current_sequence (stream poll)": lambda: dashboard_queries.current_sequence(inst),
        "overview (stream snapshot)": lambda: dashboard_queries.overview(inst),
        "overview, operator (its stream)": lambda: dashboard_queries.overview(inst, site_id="cm-a"),
        "order page (order_stats)": lambda: dashboard_queries.order_stats(inst, "po-cm-a"),
        "alerts (alert list, ack)": lambda: dashboard_queries.alerts(inst),
        "metrics (Prometheus scrape)": lambda: list(collector.collect()),
        "unit search (prefix)": lambda: unit_history.search(inst, mid[:-2]),
        "unit search (exact)": lambda: unit_history.search(inst, mid),
        "unit search (no match)": lambda: unit_history.search(inst, "ZZ"),
        "unit search, operator": lambda: unit_history.search(inst, mid[:-2], site_id="cm-b"),
        "genealogy": lambda: unit_history.genealogy(inst, mid),
        "genealogy, operator": lambda: unit_history.genealogy(inst, mid, site_id="cm-a"),
    }
    for name, window in ranges_of(inst).items():
        found |= range_queries(inst, name, window)
    return found


def report_load(
    label: str, n: int, loaded: dict[str, float], home: Path, inst: Instance, *, catch_up: bool = True
) -> None:
    measurements = n * len(PROCEDURE)
    print(f"\n{label}: {n:,} records, {measurements:,} measurements, {loaded['events']:,.0f} events", flush=True)
    print(f"  generate (Python, not the store)   {loaded['generate_s']:8.1f} s")
    stored = loaded["stored_s"]
    print(
        f"  bulk load (records, units, events, Merkle nodes) {stored:8.1f} s  "
        f"{measurements / stored:>12,.0f} measurements/s  {n / stored:>9,.0f} records/s"
    )
    if inst.db.is_sqlite:
        size = sum(p.stat().st_size for p in home.glob("fabguard.db*"))
        print(f"  database size                      {size / 2**30:8.2f} GiB")
    if catch_up:
        timed_catch_up(inst, n)


def timed_catch_up(inst: Instance, n: int) -> None:
    """The projector's catch-up over whatever is not yet folded (``fabguard stats catch-up``), timed."""
    measurements = n * len(PROCEDURE)
    t = time.perf_counter()
    folded = projection.advance(inst, dashboard_queries.load_settings(inst)).events
    took = time.perf_counter() - t
    print(
        f"  projection catch-up                {took:8.1f} s  {measurements / took:>12,.0f} measurements/s  "
        f"{n / took:>9,.0f} records/s  {folded / took:>9,.0f} events/s",
        flush=True,
    )


def time_queries(inst: Instance, loader: Loader, n: int, only: str | None) -> None:
    with inst.db.read() as s:  # live records follow every record stored (a kept instance has earlier runs')
        last_id = int(s.execute(select(func.max(TestRecordRow.id))).scalar_one() or 0)
    live = burst(loader, 20, last_id)
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min) before the queries")
    print(f"  {'query':<44} {'warm median/worst':>20}   {'live median/worst':>20}")
    over = 0
    for name, fn in queries(inst, n).items():
        if only and not re.search(only, name):
            continue
        # Warm: nothing new since the last call. The sampled views (failing units, distribution) read records,
        # not the projection, so their live bursts are still to fold: fold them first, untimed (else the next
        # query's first warm call pays for folding a hundred records, which no warm read does).
        dashboard_queries.refresh(inst, max_events=None)
        warm, warm_max = timed(fn)
        hot, hot_max = timed(fn, live)
        verdict = "ok" if max(warm_max, hot_max) < 0.2 else "OVER 200 ms"
        over += verdict != "ok"
        print(
            f"  {name:<44} {warm * 1000:8.1f} /{warm_max * 1000:8.1f} ms "
            f"{hot * 1000:8.1f} /{hot_max * 1000:8.1f} ms  {verdict}",
            flush=True,
        )
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min) after; {over} over 200 ms")


def run(
    label: str,
    url: str | None,
    n: int,
    *,
    home: Path | None = None,
    only: str | None = None,
    load_only: bool = False,
    as_of_last: bool = False,
) -> None:
    records = n
    """Load ``n`` records into a fresh instance and time the queries; with ``home``, keep the instance
    there, and when ``home`` already holds one, time its catch-up (what is not yet folded) and the queries
    over it without loading again. ``load_only``: load, then stop before the catch-up (a later run with the
    same ``home`` catches up and times the queries; with ``home`` holding a load cut short, it goes on
    loading up to ``n`` records, the rest spread from the last record's time until now)."""
    with tempfile.TemporaryDirectory() as tmp:
        home = home or Path(tmp) / "home"
        if (home / "instance.json").exists():
            inst = Instance.open(home, migrate=True)  # a kept instance, upgraded to this code's schema
            if as_of_last:  # "now" a minute after its last record: the ranges end where its records do
                with inst.db.read() as s:
                    last = s.execute(select(func.max(TestRecordRow.received_at))).scalar_one()
                inst.close()
                shift = datetime.now(UTC) - (last + timedelta(minutes=1))
                inst = Instance.open(home, clock=lambda: datetime.now(UTC) - shift)
                print(f"  as of {inst.clock():%Y-%m-%d %H:%M} (a minute after the last record)", flush=True)
            loader = Loader(inst)
            with inst.db.read() as s:
                n = int(s.execute(select(func.count()).select_from(TestRecordRow).where(
                    TestRecordRow.serial.like("SN%"))).scalar_one())  # fmt: skip
            print(f"\n{label}: the kept instance in {home}, {n:,} loaded records", flush=True)
            settle(inst)
            if load_only and records > n:  # a load cut short: go on to ``records``, up to now
                with inst.db.read() as s:
                    start = int(s.execute(select(func.max(TestRecordRow.id))).scalar_one() or 0)
                loader, loaded = load(inst, records, start)
                report_load(label, records - start, loaded, home, inst, catch_up=False)
                n = records
            else:
                timed_catch_up(inst, n)
        else:
            inst = make_instance(home, url)
            loader, loaded = load(inst, n)
            report_load(label, n, loaded, home, inst, catch_up=not load_only)
        if load_only:
            inst.close()
            return
        try:
            time_queries(inst, loader, n, only)
        finally:
            inst.close()


def main() -> None:
    tune_gc()  # as the server processes (whose projector folds) and ``fabguard stats catch-up`` do
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database, for a second run")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL run")
    parser.add_argument("--home", type=Path, help="keep the (last) instance here; if one is there, reuse it")
    parser.add_argument("--only", help="time only the queries whose name matches this regular expression")
    parser.add_argument(
        "--load-only", action="store_true", help="load, then stop before the catch-up (keep it with --home)"
    )
    parser.add_argument(
        "--as-of-last",
        action="store_true",
        help="time a kept instance as of a minute after its last record (a load cut short still fills every range)",
    )
    args = parser.parse_args()
    kw: dict[str, Any] = {
        "home": args.home,
        "only": args.only,
        "load_only": args.load_only,
        "as_of_last": args.as_of_last,
    }
    if not args.no_sqlite:
        run("SQLite", None, args.records, **kw)
    if args.database_url:
        run("PostgreSQL", args.database_url, args.records, **kw)


if __name__ == "__main__":
    main()
