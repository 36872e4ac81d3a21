"""Cost flat as the database grows (issue 28 item 5): provisioning against 0, 1M and 5M units already stored,
on SQLite and PostgreSQL, then the offline audit and the dashboard at scale.

    .venv/bin/python bench/growth.py [--sizes 0,1000000,5000000] [--units 1000] [--repeat 2] [--database-url URL]
                                     [--no-sqlite] [--audit-entries 10000000] [--dashboard-records 10000000]
                                     [--skip-audit] [--audit-units 100000,1000000] [--verifier-src SRC ...]
                                     [--skip-dashboard] [--dashboard-only]

1. **Provisioning at each size S.** One instance is grown from size to size (a size smaller than the one
   before starts a fresh instance; the few thousand units the timed runs add stay, noise beside millions).
   Each stored unit is what the server leaves behind when a unit is tested and provisioned, row for row:
   its test record (``testrecords``) and ``test.recorded`` event, its unit row (unique serial, key,
   random-looking certificate serial and digest, a real certificate's PEM) and ``unit.provisioned`` event,
   with the events' real details and every Merkle node they complete; two ledger entries per unit. The
   record's body is a short stand-in (a real one is about 2 KB, read by nothing on the write path). Rows
   are bulk-written by a connection of the bench's own (executemany of tuples on SQLite, with load-only
   pragmas on that connection: no fsync, a 1 GiB page cache; COPY on PostgreSQL, then ANALYZE as
   autovacuum would have), entries formatted from templates that ``_rows`` checks byte for byte against
   ``encode_entry`` every few thousand rows; the load's own rate is printed. Then ``--repeat`` runs of
   ``--units`` new units are provisioned in process through the service the server's writer calls (read
   the facts, authorise, take quota, sign, write the unit, the event and its Merkle nodes, commit: one
   unit per transaction, the one-unit-per-request path without HTTP), each unit timed: mean, p50, p99 and
   the mean's ratio to the first run, then the CPU per unit (this process's, plus on PostgreSQL its client
   backends', read from /proc: the server runs on this machine) and its ratio to the first run. On a
   shared machine the CPU column is the one to judge flatness by: wall time waits for other tenants.
   With ``--database-url`` (an empty PostgreSQL database, dropped and made again by the bench: give it
   one you can lose) PostgreSQL runs too. tests/service/provisioning/test_write_path_plans.py checks the
   same path's query plans (every growing table read through an index, nothing counted).
2. **The offline audit** (bench/ledger.py's generator and verifier): ``fabguard audit verify`` of an export of
   N/10 and N entries (test records) in a process of its own, time, entries/s and peak resident memory
   (VmHWM): linear time, memory flat. Then exports of U units each (``--audit-units``: a test record and a
   provisioning each, a real certificate file per unit, the CA certificates, the manifest's file map, as
   ``fabguard ledger export`` writes them), each verified by the fabguard of every ``--verifier-src`` (the
   verifier before and after a change, on one export).
3. **The dashboard** (bench/analytics.py's loader and queries) over R test records: every dashboard query's
   median and worst of 5, warm and live; the goal is each under 200 ms.

Everything runs on this machine's cores at once with nothing else; figures are for this machine only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

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
from fabguard.store.models import Counter, Event, LedgerNode, Order, TestRecordRow

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20_000
PRODUCT, SITE, FIXTURE, OLD_ORDER = "sensor", "cm-a", "fx-1", "po-old"
AT = datetime(2026, 11, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def make_instance(home: Path, url: str | None, size: int) -> Instance:
    os.environ.setdefault("FABGUARD_KEY_PASSPHRASE", "bench-passphrase-not-a-secret")
    init_instance(home, organization="Bench", database_url=url)
    inst = Instance.open(home)
    prepare(inst, size)
    return inst


def prepare(inst: Instance, size: int) -> None:
    """The product, site, fixture and the order the stored units were provisioned under."""
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor", actor="bench")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="bench")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE), site_id=SiteId(SITE), actor="bench")
    orders.create_order(
        inst, order_id=OrderId(OLD_ORDER), product_id=ProductId(PRODUCT), site_id=SiteId(SITE),
        quota=max(size, 1), actor="bench",
    )  # fmt: skip


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


UNIT_COLUMNS = (
    "product_id", "serial", "order_id", "fixture_id", "key_fingerprint", "cert_serial", "cert_sha256",
    "certificate_pem", "issued_at", "issuing_ca", "attestation",
)  # fmt: skip
TEST_COLUMNS = (
    "id", "serial", "fixture_id", "site_id", "declared_station_id", "outcome", "start_ms", "end_ms",
    "measurement_count", "received_at", "record_json",
)  # fmt: skip
EVENT_COLUMNS = ("seq", "at", "kind", "actor", "order_id", "fixture_id", "serial", "code", "detail", "entry")
NODE_COLUMNS = ("level", "idx", "hash")
COLUMNS = {"test_records": TEST_COLUMNS, "units": UNIT_COLUMNS, "events": EVENT_COLUMNS, "ledger_nodes": NODE_COLUMNS}
Batches = dict[str, list[tuple[Any, ...]]]


_JSON: dict[str, Any] = {"sort_keys": True, "separators": (",", ":")}
# Sentinels the templates below replace: each field a unit's rows vary in.
_SENTINELS = {"index": 987654320, "serial": "ZZSERZZ", "record_id": 876543219, "cert_serial": "ZZCSNZZ",
              "digest": "ZZDIGZZ", "key_fp": "ZZKEYZZ"}  # fmt: skip


def _details(record_id: object, cert_serial: object, digest: object, key_fp: object) -> dict[str, dict[str, Any]]:
    """The details ``testrecords`` and ``group`` give a unit's two events, by kind."""
    return {
        "test.recorded": {"declared_station_id": FIXTURE, "outcome": "PASS", "record_id": record_id,
                          "site_id": SITE, "station_id": FIXTURE},
        "unit.provisioned": {"cert_serial": cert_serial, "cert_sha256": digest, "key_fingerprint": key_fp,
                             "product_id": PRODUCT, "site_id": SITE},
    }  # fmt: skip


ORDER_OF = {"test.recorded": None, "unit.provisioned": OLD_ORDER}


def _entry(seq: int, kind: str, serial: str, detail: dict[str, Any]) -> bytes:
    """The ledger entry ``store/eventlog.append_events`` encodes for this event."""
    return encode_entry(
        seq=seq, at=AT, kind=kind, actor=f"fixture:{FIXTURE}", order_id=ORDER_OF[kind], fixture_id=FIXTURE,
        serial=serial, code=None, detail=detail,
    )  # fmt: skip


def _templates() -> dict[str, tuple[str, str]]:
    """Per kind, ``str.format`` templates of the entry and of the ``detail`` column, made by encoding sentinels
    with the real encoders (formatting a template costs a fifth of encoding; ``_rows`` checks it against
    ``encode_entry`` every few thousand rows)."""
    x = _SENTINELS
    out = {}
    for kind, detail in _details(x["record_id"], x["cert_serial"], x["digest"], x["key_fp"]).items():
        texts = [_entry(int(x["index"]) + 1, kind, str(x["serial"]), detail).decode(), json.dumps(detail, **_JSON)]
        for n, text in enumerate(texts):
            text = text.replace("{", "{{").replace("}", "}}")
            for name, value in x.items():
                text = text.replace(str(value), "{" + name + "}")
            texts[n] = text
        out[kind] = (texts[0], texts[1])
    return out


def _rows(
    first: int, count: int, first_seq: int, first_record: int, tree: merkle.CompactRange, at: object
) -> Iterator[Batches]:
    """Batches of what units ``first`` to ``first + count`` provisioned one by one leave behind, row for row
    as the server writes them: each unit's test record (``service/provisioning/testrecords``) and its
    ``test.recorded`` event, then the unit (``service/provisioning/group``) and its ``unit.provisioned``
    event, each event a ledger leaf with the Merkle nodes it completes (``tree``: the log as it stands)."""
    pem = _sample_certificate()
    record = json.dumps({"dut_id": "x", "outcome": "PASS", "phases": []})
    templates = _templates()
    batches: Batches = {name: [] for name in COLUMNS}
    tests, units, events, nodes = (batches[n] for n in COLUMNS)
    seq, actor, sha = first_seq, f"fixture:{FIXTURE}", hashlib.sha256
    for i in range(first, first + count):
        serial = f"SN-OLD-{i:08d}"
        record_id = first_record + i - first + 1
        tests.append((record_id, serial, FIXTURE, SITE, FIXTURE, "PASS", 0, 1, 0, at, record))
        key_fp = sha(b"k" + serial.encode()).hexdigest()
        digest = sha(serial.encode()).hexdigest()
        cert_serial = sha(b"c" + serial.encode()).hexdigest()[:40]  # random-looking, as a certificate's is
        units.append((PRODUCT, serial, OLD_ORDER, FIXTURE, key_fp, cert_serial, digest, pem, at, "issuing", None))
        fields = {"serial": serial, "record_id": record_id, "cert_serial": cert_serial, "digest": digest,
                  "key_fp": key_fp}  # fmt: skip
        for kind, (entry_t, detail_t) in templates.items():
            seq += 1
            entry = entry_t.format(index=seq - 1, **fields).encode()
            if i % 4093 == 0:  # the template is the encoder's output, byte for byte
                detail = _details(record_id, cert_serial, digest, key_fp)[kind]
                assert entry == _entry(seq, kind, serial, detail), (entry, kind)
                assert detail_t.format(**fields) == json.dumps(detail, **_JSON)
            events.append(
                (seq, at, kind, actor, ORDER_OF[kind], FIXTURE, serial, None, detail_t.format(**fields), entry)
            )
            nodes.extend(tree.append(merkle.leaf_hash(entry)))
        if (i - first + 1) % BATCH == 0 or i - first + 1 == count:
            yield batches
            for rows in batches.values():
                rows.clear()


def _stored_tree(s: Session, size: int) -> merkle.CompactRange:
    """The log's compact range at ``size`` leaves from its stored nodes: one complete subtree per set bit of
    ``size`` (the subtree at level L is node ``(L, (size >> L) - 1)``), largest first."""
    want = [(level, (size >> level) - 1) for level in reversed(range(size.bit_length())) if size >> level & 1]
    n = LedgerNode.__table__.c
    got = {
        (level, idx): bytes(h)
        for level, idx, h in s.execute(
            select(n.level, n.idx, n.hash).where(or_(*(and_(n.level == lv, n.idx == ix) for lv, ix in want)))
        )
    } if want else {}  # fmt: skip
    tree = merkle.CompactRange()
    tree._stack = [(level, got[(level, idx)]) for level, idx in want]
    tree.size = size
    return tree


def preload(inst: Instance, first: int, count: int) -> float:
    """Write ``count`` more provisioned units (numbered from ``first``) with their records, events and Merkle
    nodes; the load's seconds."""
    if count <= 0:
        return 0.0
    start = time.perf_counter()
    with inst.db.read() as s:
        first_seq = int(s.get(Counter, EVENT_COUNTER).value)  # type: ignore[union-attr]
        first_record = int(s.execute(select(func.coalesce(func.max(TestRecordRow.id), 0))).scalar_one())
        tree = _stored_tree(s, first_seq)
    loaded = 0
    with _loader(inst) as (write, at):
        for batches in _rows(first, count, first_seq, first_record, tree, at):
            write(batches)
            loaded += len(batches["units"])
            if loaded % (BATCH * 25) == 0:
                log(f"loaded {loaded:,} units in {time.perf_counter() - start:.0f} s")
    with inst.db.transaction() as s:
        s.execute(update(Counter).where(Counter.name == EVENT_COUNTER).values(value=first_seq + 2 * count))
        order = s.get(Order, OLD_ORDER)
        assert order is not None
        order.used = first + count
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            for table in ("units", "test_records"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            conn.exec_driver_sql("ANALYZE")  # as autovacuum would have, over months of growth
            conn.commit()
    return time.perf_counter() - start


@contextlib.contextmanager
def _loader(inst: Instance) -> Iterator[tuple[Callable[[Batches], None], object]]:
    """A connection of the bench's own that bulk-writes batches: on SQLite a plain sqlite3 connection with
    load-only pragmas (no fsync, a 1 GiB page cache: the server's own connections keep theirs), executemany
    of tuples with the timestamps bound as SQLAlchemy binds them; on PostgreSQL COPY, commits unsynced."""
    if inst.db.is_sqlite:
        path = inst.db.engine.url.database
        assert path is not None
        at = Event.__table__.c.at.type.bind_processor(inst.db.engine.dialect)
        assert at is not None
        stamp = at(AT)
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("synchronous=OFF", "cache_size=-1048576", "temp_store=MEMORY", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        sql = {n: f"INSERT INTO {n} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})" for n, c in COLUMNS.items()}

        def write_sqlite(batches: Batches) -> None:
            conn.execute("BEGIN IMMEDIATE")
            for name, rows in batches.items():
                conn.executemany(sql[name], rows)
            conn.execute("COMMIT")

        try:
            yield write_sqlite, stamp
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return
    raw = inst.db.engine.raw_connection()
    try:
        cur: Any = raw.cursor()
        cur.execute("SET synchronous_commit = off")

        def write_pg(batches: Batches) -> None:
            for name, rows in batches.items():
                with cur.copy(f"COPY {name} ({', '.join(COLUMNS[name])}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            raw.commit()

        yield write_pg, AT
    finally:
        raw.close()


def cpu_seconds(inst: Instance) -> float:
    """CPU this process and, on PostgreSQL, the database's server processes (same machine) have used: on a
    shared machine a unit's CPU is steadier than its wall time, which waits for the other tenants' turns."""
    used = time.process_time()
    if not inst.db.is_sqlite:
        tick = os.sysconf("SC_CLK_TCK")
        with inst.db.engine.connect() as conn:
            pids = conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND backend_type = 'client backend'"
            ).scalars()
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # not on this machine, or gone
                    continue
                used += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return used


def provision(inst: Instance, units: int, run: int) -> tuple[list[float], float]:
    """Provision ``units`` new units one per transaction (a new order, serials of run ``run``); each one's
    seconds, and the CPU seconds they took (``cpu_seconds``). Their test records are uploaded first, untimed."""
    order = orders.create_order(
        inst, order_id=OrderId(f"po-new-{run}"), product_id=ProductId(PRODUCT), site_id=SiteId(SITE), quota=units,
        actor="bench",
    ).id  # fmt: skip
    fx = FixtureFacts(FIXTURE, SITE, False)
    rng = random.Random(run)
    planned = []
    for i in range(units):
        serial = f"SN-R{run:02d}-{i:06d}"
        device = SimulatedDevice(serial)
        testrecords.record_test(inst, fx, openhtf_record(serial, FIXTURE, fail=False, rng=rng))
        planned.append((serial, device.csr_pem()))
    times = []
    cpu = cpu_seconds(inst)
    for serial, csr in planned:
        request = parsing.unit_request(order, serial, csr, None, max_csr_bytes=16384)
        start = time.perf_counter()
        issuance.provision_unit(inst, fx, request)
        times.append(time.perf_counter() - start)
    return times, cpu_seconds(inst) - cpu


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


def growth(engine: str, url: str | None, sizes: list[int], units: int, repeat: int) -> None:
    """One instance grown from size to size (a smaller size than the last starts a fresh one), ``repeat``
    timed runs of ``units`` new units at each."""
    print(f"\n## provisioning as the database grows: {engine}, {units} new units per run, one per transaction")
    print(
        f"{'stored units':>14} {'load s':>8} {'load/s':>9} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs 0':>6}"
        f" {'cpu ms':>7} {'vs 0':>6}"
    )
    base, cpu_base, run, stored = None, None, 0, 0
    with contextlib.ExitStack() as stack:
        inst: Instance | None = None
        for size in sizes:
            if inst is None or size < stored:
                if inst is not None:
                    inst.close()
                home = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "home"
                inst = make_instance(home, fresh_pg(url) if url else None, max(sizes))
                stored = 0
            # The units the runs before added are stored too (a few thousand: noise beside millions).
            loaded, count = preload(inst, stored, size - stored), size - stored
            stored = size
            for _ in range(repeat):
                run += 1
                times, cpu = provision(inst, units, run)
                mean, cpu = statistics.mean(times), cpu / units
                base, cpu_base = base or mean, cpu_base or cpu
                rate = f"{count / loaded:9,.0f}" if loaded else f"{'-':>9}"
                print(
                    f"{size:>14,} {loaded:8.0f} {rate} {mean * 1e3:8.2f} {_p(times, 0.5) * 1e3:7.2f} "
                    f"{_p(times, 0.99) * 1e3:7.2f} {mean / base:6.2f} {cpu * 1e3:7.2f} {cpu / cpu_base:6.2f}"
                    f"   load avg {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                loaded, count = 0.0, 0
        if inst is not None:
            inst.close()


def audit(entries: int, units: list[int], sources: list[Path]) -> None:
    """Each export is verified once by the fabguard of each of ``sources`` (its src folder: one export, the
    verifier before and after a change)."""
    import ledger as ledger_bench  # bench/ledger.py

    print("\n## offline audit (audit verify) of a synthetic export, in a process of its own", flush=True)
    print(f"{'entries':>12} {'units':>10} {'seconds':>8} {'entries/s':>10} {'peak MiB':>9}  made s  verifier")
    runs = [(n, False) for n in (entries // 10, entries) if n] + [(2 * u, True) for u in units]
    for n, with_units in runs:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            vkey = ledger_bench.write_export(Path(tmp) / "export", n, units=with_units)
            made = time.perf_counter() - start
            for src in sources:
                checked, elapsed, hwm_kib, certs = ledger_bench.measure_verify(Path(tmp) / "export", vkey, src)
                print(
                    f"{checked:>12,} {certs:>10,} {elapsed:8.1f} {checked / elapsed:10,.0f} {hwm_kib / 1024:9.1f}"
                    f"  {made:6.0f}  {src}",
                    flush=True,
                )


def dashboard(records: int, url: str | None) -> None:
    import analytics as analytics_bench  # bench/analytics.py

    print(f"\n## dashboard queries over {records:,} test records (bench/analytics.py)", flush=True)
    analytics_bench.run("sqlite" if url is None else "postgresql", fresh_pg(url) if url else None, records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="0,1000000,5000000", help="units stored before each run (comma-separated)")
    p.add_argument("--units", type=int, default=1000, help="new units provisioned in each timed run")
    p.add_argument("--repeat", type=int, default=2, help="timed runs at each size (their spread is the noise)")
    p.add_argument("--database-url", help="an empty PostgreSQL database the bench may drop and make again")
    p.add_argument("--no-sqlite", action="store_true")
    p.add_argument("--audit-entries", type=int, default=10_000_000)
    p.add_argument("--dashboard-records", type=int, default=10_000_000)
    p.add_argument("--skip-audit", action="store_true")
    p.add_argument(
        "--audit-units", default="100000,1000000", help="exports of units (two entries and a certificate file each)"
    )
    p.add_argument(
        "--verifier-src",
        type=Path,
        action="append",
        help="the src folder of a fabguard whose verifier checks each export (repeat to compare; default ours)",
    )
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
        growth("SQLite", None, sizes, args.units, args.repeat)
    if args.database_url:
        growth("PostgreSQL", args.database_url, sizes, args.units, args.repeat)
    if not args.skip_audit:
        audit(
            args.audit_entries, [int(u) for u in args.audit_units.split(",") if u], args.verifier_src or [ROOT / "src"]
        )
    if not args.skip_dashboard:
        dashboard(args.dashboard_records, None)
        if args.database_url:
            dashboard(args.dashboard_records, args.database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
