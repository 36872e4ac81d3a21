"""Cost flat as the database grows (issue 28 item 5): provisioning against 0, 1M and 5M units already stored,
on SQLite and PostgreSQL, then the offline audit and the dashboard at scale.

    .venv/bin/python bench/growth.py [--sizes 0,1000000,5000000] [--units 1000] [--database-url URL]
                                     [--no-sqlite] [--audit-entries 10000000] [--dashboard-records 10000000]
                                     [--skip-audit] [--skip-dashboard] [--dashboard-only]

1. **Provisioning at each size S.** A fresh instance is loaded with S units already provisioned: their unit rows
   (unique serial, key, certificate serial and digest, a real certificate's PEM), a passing test record each and
   a ``unit.provisioned`` ledger event each with its Merkle nodes (every complete subtree, as the event log
   stores them), bulk-written (executemany on SQLite, COPY on PostgreSQL; the load's own rate is printed). Then
   ``--units`` new units are provisioned in process through the service the server's writer calls (read the
   facts, authorise, take quota, sign, write the unit, the event and its Merkle nodes, commit: one unit per
   transaction, the one-unit-per-request path without HTTP), each timed: mean, p50, p99 and the mean's ratio
   to size 0. Flat within noise is the goal: every read of the transaction is an indexed look-up, and the
   ledger appends read O(log n) nodes. With ``--database-url`` (an empty PostgreSQL database, dropped and made
   again between sizes by the bench: give it one you can lose) PostgreSQL runs too.
2. **The offline audit** (bench/ledger.py's generator and verifier): ``fabguard audit verify`` of an export of
   N/10 and N entries in a process of its own, time, entries/s and peak resident memory (VmHWM): linear time,
   memory flat.
3. **The dashboard** (bench/analytics.py's loader and queries) over R test records: every dashboard query's
   median and worst of 5, warm and live; the goal is each under 200 ms.

Everything runs on this machine's cores at once with nothing else; figures are for this machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fabguard.api import parsing
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.ledger import merkle
from fabguard.ledger.entry import encode_entry
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.provisioning import issuance, testrecords
from fabguard.store.eventlog import EVENT_COUNTER
from fabguard.store.models import Counter, Event, LedgerNode, Order, TestRecordRow, Unit

BATCH = 20_000
PRODUCT, SITE, FIXTURE, OLD_ORDER = "sensor", "cm-a", "fx-1", "po-old"
AT = datetime(2026, 11, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def make_instance(home: Path, url: str | None, size: int) -> Instance:
    os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-passphrase-not-a-secret")
    init_instance(home, organization="Bench", database_url=url)
    inst = Instance.open(home)
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="bench")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE), site_id=SiteId(SITE), actor="bench")
    quota = max(size, 1)
    orders.create_order(
        inst, order_id=OrderId(OLD_ORDER), product_id=ProductId(PRODUCT), site_id=SiteId(SITE), quota=quota,
        actor="bench",
    )  # fmt: skip
    return inst


def _sample_certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SN-OLD-00000000")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(AT)
        .not_valid_after(AT + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _rows(size: int, first_seq: int) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """The unit, its test record and its ledger event, for each of ``size`` units already provisioned."""
    pem = _sample_certificate()
    record = json.dumps({"dut_id": "x", "outcome": "PASS", "phases": []})
    for i in range(size):
        serial = f"SN-OLD-{i:08d}"
        digest = hashlib.sha256(serial.encode()).hexdigest()
        unit = {
            "product_id": PRODUCT, "serial": serial, "order_id": OLD_ORDER, "fixture_id": FIXTURE,
            "key_fingerprint": hashlib.sha256(b"k" + serial.encode()).hexdigest(), "cert_serial": f"{i + 1:040x}",
            "cert_sha256": digest, "certificate_pem": pem, "issued_at": AT, "issuing_ca": "issuing",
        }  # fmt: skip
        test = {
            "serial": serial, "fixture_id": FIXTURE, "site_id": SITE, "declared_station_id": FIXTURE,
            "outcome": "PASS", "start_ms": 0, "end_ms": 1, "measurement_count": 0, "received_at": AT,
            "record_json": record,
        }  # fmt: skip
        seq = first_seq + i + 1
        detail = {"cert_serial": unit["cert_serial"], "cert_sha256": digest, "site_id": SITE}
        fields = {"at": AT, "kind": "unit.provisioned", "actor": f"fixture:{FIXTURE}", "order_id": OLD_ORDER,
                  "fixture_id": FIXTURE, "serial": serial, "code": None}  # fmt: skip
        event = {**fields, "seq": seq, "detail": json.dumps(detail, sort_keys=True, separators=(",", ":")),
                 "entry": encode_entry(seq=seq, detail=detail, **fields)}  # fmt: skip
        yield unit, test, event


def preload(inst: Instance, size: int) -> float:
    """Write ``size`` provisioned units with their records, events and Merkle nodes; the load's seconds."""
    if size == 0:
        return 0.0
    start = time.perf_counter()
    with inst.db.read() as s:
        first_seq = int(s.get(Counter, EVENT_COUNTER).value)  # type: ignore[union-attr]
    # The tree as it stands (the setup's own events), then every new leaf's completed nodes.
    tree = merkle.CompactRange()
    with inst.db.read() as s:
        for (entry,) in s.execute(Event.__table__.select().with_only_columns(Event.entry).order_by(Event.seq)):
            tree.push(merkle.leaf_hash(bytes(entry)))
    batches: dict[str, list[dict[str, Any]]] = {"units": [], "test_records": [], "events": [], "ledger_nodes": []}
    for n, (unit, test, event) in enumerate(_rows(size, first_seq), start=1):
        batches["units"].append(unit)
        batches["test_records"].append(test)
        batches["events"].append(event)
        batches["ledger_nodes"].extend(
            {"level": lv, "idx": ix, "hash": h} for lv, ix, h in tree.append(merkle.leaf_hash(event["entry"]))
        )
        if n % BATCH == 0 or n == size:
            _write(inst, batches)
            if n % (BATCH * 25) == 0:
                log(f"loaded {n:,} units in {time.perf_counter() - start:.0f} s")
    with inst.db.transaction() as s:
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=first_seq + size))
        order = s.get(Order, OLD_ORDER)
        assert order is not None
        order.used = size
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('units', 'id'), (SELECT max(id) FROM units))")
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('test_records', 'id'), (SELECT max(id) FROM test_records))"
            )
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    return time.perf_counter() - start


TABLES = {"units": Unit, "test_records": TestRecordRow, "events": Event, "ledger_nodes": LedgerNode}


def _write(inst: Instance, batches: dict[str, list[dict[str, Any]]]) -> None:
    if inst.db.is_sqlite:
        with inst.db.transaction() as s:
            for name, rows in batches.items():
                if rows:
                    s.execute(insert(TABLES[name]), rows)
    else:
        raw = inst.db.engine.raw_connection()
        try:
            cur: Any = raw.cursor()
            for name, rows in batches.items():
                if not rows:
                    continue
                columns = list(rows[0])
                with cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
            raw.commit()
        finally:
            raw.close()
    for rows in batches.values():
        rows.clear()


def provision(inst: Instance, units: int, size: int) -> list[float]:
    """Provision ``units`` new units one per transaction; each one's seconds."""
    order = orders.create_order(
        inst, order_id=OrderId(f"po-new-{size}"), product_id=ProductId(PRODUCT), site_id=SiteId(SITE), quota=units,
        actor="bench",
    ).id  # fmt: skip
    fx = FixtureFacts(FIXTURE, SITE, False)
    rng = random.Random(size)
    planned = []
    for i in range(units):
        serial = f"SN-NEW-{i:06d}"
        device = SimulatedDevice(serial)
        testrecords.record_test(inst, fx, openhtf_record(serial, FIXTURE, fail=False, rng=rng))
        planned.append((serial, device.csr_pem()))
    times = []
    for serial, csr in planned:
        request = parsing.unit_request(order, serial, csr, None, max_csr_bytes=16384)
        start = time.perf_counter()
        issuance.provision_unit(inst, fx, request)
        times.append(time.perf_counter() - start)
    return times


def _p(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * q))]


def fresh_pg(url: str) -> str:
    """Drop and make again the database ``url`` names (it must be the bench's own)."""
    u = make_url(url)
    name = u.database
    admin = u.set(database="postgres").render_as_string(hide_password=False).replace("+psycopg", "")
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def growth(engine: str, url: str | None, sizes: list[int], units: int) -> None:
    print(f"\n## provisioning as the database grows: {engine}, {units} new units per size, one per transaction")
    print(f"{'stored units':>14} {'load s':>8} {'load/s':>9} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs 0':>6}")
    base = None
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            inst = make_instance(Path(tmp) / "home", fresh_pg(url) if url else None, size)
            try:
                loaded = preload(inst, size)
                times = provision(inst, units, size)
            finally:
                inst.close()
        mean = statistics.mean(times)
        base = base or mean
        rate = f"{size / loaded:9,.0f}" if loaded else f"{'-':>9}"
        print(
            f"{size:>14,} {loaded:8.0f} {rate} {mean * 1e3:8.2f} {_p(times, 0.5) * 1e3:7.2f} "
            f"{_p(times, 0.99) * 1e3:7.2f} {mean / base:6.2f}",
            flush=True,
        )


def audit(entries: int) -> None:
    import ledger as ledger_bench  # bench/ledger.py

    print("\n## offline audit (audit verify) of a synthetic export, in a process of its own")
    print(f"{'entries':>12} {'seconds':>8} {'entries/s':>10} {'peak MiB':>9}")
    src = str(Path(__file__).resolve().parents[1] / "src")
    for n in (entries // 10, entries):
        with tempfile.TemporaryDirectory() as tmp:
            vkey = ledger_bench.write_export(Path(tmp) / "export", n)
            code = ledger_bench.VERIFY.format(src=src, d=str(Path(tmp) / "export"), vkey=vkey)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        checked, elapsed, hwm_kib = out.split()
        print(
            f"{int(checked):>12,} {float(elapsed):8.1f} {int(checked) / float(elapsed):10,.0f} {int(hwm_kib) / 1024:9.1f}"
        )


def dashboard(records: int, url: str | None) -> None:
    import analytics as analytics_bench  # bench/analytics.py

    print(f"\n## dashboard queries over {records:,} test records (bench/analytics.py)", flush=True)
    analytics_bench.run("sqlite" if url is None else "postgresql", fresh_pg(url) if url else None, records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="0,1000000,5000000", help="units stored before each run (comma-separated)")
    p.add_argument("--units", type=int, default=1000, help="new units provisioned at each size")
    p.add_argument("--database-url", help="an empty PostgreSQL database the bench may drop and make again")
    p.add_argument("--no-sqlite", action="store_true")
    p.add_argument("--audit-entries", type=int, default=10_000_000)
    p.add_argument("--dashboard-records", type=int, default=10_000_000)
    p.add_argument("--skip-audit", action="store_true")
    p.add_argument("--skip-dashboard", action="store_true")
    p.add_argument("--dashboard-only", action="store_true", help="only the dashboard (3.), SQLite then --database-url")
    args = p.parse_args(argv)
    if args.dashboard_only:
        dashboard(args.dashboard_records, None)
        if args.database_url:
            dashboard(args.dashboard_records, args.database_url)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# bench/growth.py  sizes {sizes}  units {args.units}  python {sys.version.split()[0]}  cores {os.cpu_count()}"
    )
    if not args.no_sqlite:
        growth("SQLite", None, sizes, args.units)
    if args.database_url:
        growth("PostgreSQL", args.database_url, sizes, args.units)
    if not args.skip_audit:
        audit(args.audit_entries)
    if not args.skip_dashboard:
        dashboard(args.dashboard_records, None)
        if args.database_url:
            dashboard(args.dashboard_records, args.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
