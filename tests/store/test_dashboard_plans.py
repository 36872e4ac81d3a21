"""The dashboard's reads of raw test records go through the indexes made for them, on both engines
(issue 28 item 5: every dashboard query under 200 ms at 10M records). A plan that scans the table, or
steps over every passing record to find the failed ones, costs seconds at that size; these tests read
the plans each engine chooses, never a time.

On PostgreSQL a small table is cheapest to scan whatever the indexes, so the plans are asked with
sequential scans priced out (``enable_seqscan = off``): what is checked is that the query can use the
index (its predicate matches the partial index's) and that the planner prefers it to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.store import station_windows, unit_history, windows
from fabguard.store.models import Fixture, RecordDigest, Site, TestRecordRow, Unit

AT = datetime(2026, 12, 1, tzinfo=UTC)


def _records(inst: Instance, n: int = 400) -> None:
    with inst.db.transaction() as s:
        s.add_all([Site(id=site, name=site, created_at=AT) for site in ("cm-a", "cm-b")])
        s.flush()
        s.add_all([Fixture(id=f"fx-{i}", site_id="cm-a" if i < 2 else "cm-b", created_at=AT) for i in range(4)])
        s.flush()
        rows = []
        for i in range(n):
            fixture, site = (f"fx-{i % 4}", "cm-a" if i % 4 < 2 else "cm-b")
            rows.append(
                {
                    "serial": f"SN{i:06d}", "fixture_id": fixture, "site_id": site, "declared_station_id": fixture,
                    "outcome": "FAIL" if i % 10 == 0 else "PASS", "start_ms": 0, "end_ms": 1,
                    "measurement_count": 0, "received_at": AT + timedelta(seconds=i), "record_json": "{}",
                }
            )  # fmt: skip
        s.execute(insert(TestRecordRow), rows)
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE test_records")
            conn.commit()


@contextmanager
def _statements(inst: Instance) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, params))

    event.listen(inst.db.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(inst.db.engine, "before_cursor_execute", grab)


def plans_of(inst: Instance, read: Callable[[Session], object]) -> list[str]:
    """The plans the engine chooses for the SELECTs ``read`` makes, in order."""
    with _statements(inst) as seen, inst.db.read() as s:
        read(s)
    plans = []
    for statement, params in seen:
        with inst.db.engine.connect() as conn:
            if inst.db.is_sqlite:
                rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
                plans.append("\n".join(str(r[-1]) for r in rows))
                continue
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", params).all()
            conn.rollback()
            plans.append("\n".join(str(r[0]) for r in rows))
    return plans


def plan_of(inst: Instance, read: Callable[[Session], object]) -> str:
    """The plan the engine chooses for the one SELECT ``read`` makes."""
    plans = plans_of(inst, read)
    assert len(plans) == 1, plans
    return plans[0]


FAILED_READS = {
    "ix_test_records_failed_received_at": {},
    "ix_test_records_failed_fixture": {"fixture_id": "fx-1"},
    "ix_test_records_failed_site": {"site_id": "cm-b"},
}


@pytest.mark.parametrize("index", sorted(FAILED_READS))
def test_the_newest_failed_records_are_read_from_the_failed_records_indexes(any_instance: Instance, index: str) -> None:
    """Failing units (of a range, a station, an operator's site) read the failed records alone."""
    _records(any_instance)
    filters = FAILED_READS[index]
    plan, *then = plans_of(
        any_instance,
        lambda s: station_windows.newest_records(
            s, AT, AT + timedelta(days=1), failed_only=True, limit=1000, digest="failed_steps", **filters
        ),
    )
    assert index in plan, plan
    assert "SCAN test_records" not in plan and "Seq Scan" not in plan, plan
    # Their digests, then the bodies of those without one (none here has one), when any were found.
    assert all("SCAN" not in p and "Seq Scan" not in p for p in then), then


def test_the_failed_records_indexes_answer_exactly_the_failed_records(any_instance: Instance) -> None:
    """Read through the partial indexes, the newest failed records are exactly the failed ones, newest last."""
    _records(any_instance)
    with any_instance.db.read() as s:
        got = station_windows.newest_records(
            s, AT, AT + timedelta(days=1), fixture_id="fx-0", failed_only=True, limit=5
        )
    assert [r.serial for r in got] == [f"SN{i:06d}" for i in (300, 320, 340, 360, 380)]
    assert {r.outcome for r in got} == {"FAIL"}


def test_a_units_merkle_nodes_are_searched_on_the_primary_key(any_instance: Instance) -> None:
    """Genealogy reads all its proofs' nodes in one statement; both engines must search, not scan, for it
    (a row-value IN made SQLite scan every node: 1.5 s per unit page at 1M records)."""
    keys = {(0, 5), (0, 8), (1, 3), (3, 0), (20, 1)}
    plan = plan_of(any_instance, lambda s: unit_history.ledger_nodes(s, keys))
    assert "ledger_nodes" in plan, plan
    assert "SCAN ledger_nodes" not in plan and "Seq Scan" not in plan, plan


def _digests(inst: Instance) -> None:
    """A digest for each record but every twentieth (as if stored before digests existed)."""
    with inst.db.transaction() as s:
        ids = s.execute(select(TestRecordRow.id).order_by(TestRecordRow.id)).scalars().all()
        rows = [{"record_id": i, "measured": "[]", "failed_steps": "[]"} for k, i in enumerate(ids) if k % 20]
        s.execute(insert(RecordDigest), rows)
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE record_digests")
            conn.commit()


@pytest.mark.parametrize("failed_only", [False, True])
def test_the_samples_read_digests_and_bodies_by_primary_key(any_instance: Instance, failed_only: bool) -> None:
    """The distribution and failing units read the newest records' heads through their index, then their
    digests by primary key, then the bodies of the records without one by primary key: each plan a search,
    none growing with the tables."""
    _records(any_instance)
    _digests(any_instance)
    heads, digests, bodies = plans_of(
        any_instance,
        lambda s: station_windows.newest_records(s, AT, AT + timedelta(days=1), failed_only=failed_only, limit=500),
    )
    assert ("ix_test_records_failed_received_at" if failed_only else "ix_test_records_received_at") in heads, heads
    primary = ("USING INTEGER PRIMARY KEY", "pk_record_digests", "pk_test_records")
    for plan, table in ((digests, "record_digests"), (bodies, "test_records")):
        assert table in plan and any(p in plan for p in primary), plan
        assert "SCAN" not in plan and "Seq Scan" not in plan, plan
    with any_instance.db.read() as s:
        got = station_windows.newest_records(s, AT, AT + timedelta(days=1), failed_only=failed_only, limit=500)
    expected = [(None, "[]") if int(r.serial[2:]) % 20 else ("{}", None) for r in got]
    assert [(r.record_json, r.digest) for r in got] == expected
    assert {e[1] for e in expected} == {None, "[]"}


def test_an_orders_sample_reads_digests_by_primary_key(any_instance: Instance) -> None:
    """The order page's capability: the order's units, their records, then the records' digests by key."""
    _records(any_instance)
    _digests(any_instance)
    plans = plans_of(any_instance, lambda s: station_windows.order_unit_records(s, "po-1", "cm-a", limit=500))
    assert len(plans) == 2 and all("record_digests" not in p for p in plans), plans  # no records: no digests
    product_catalog.create_product(any_instance, product_id=ProductId("p"), name="P", actor="t")
    orders.create_order(
        any_instance, order_id=OrderId("po-1"), product_id=ProductId("p"), site_id=SiteId("cm-a"), quota=9, actor="t"
    )
    with any_instance.db.transaction() as s:
        s.add_all(
            [
                Unit(product_id="p", serial=f"SN{i:06d}", order_id="po-1", fixture_id="fx-0", key_fingerprint=f"k{i}",
                     cert_serial=f"c{i}", cert_sha256=f"h{i}", certificate_pem="", issued_at=AT)
                for i in (0, 4, 8)
            ]
        )  # fmt: skip
    _, _, digests, bodies = plans_of(
        any_instance, lambda s: station_windows.order_unit_records(s, "po-1", "cm-a", limit=500)
    )
    for plan, table in ((digests, "record_digests"), (bodies, "test_records")):
        assert table in plan and ("PRIMARY KEY" in plan or f"pk_{table}" in plan), plan
        assert "SCAN" not in plan and "Seq Scan" not in plan, plan


@pytest.mark.parametrize("digits", ["001b63000010", "ab" * 32], ids=["mac", "sha256"])
def test_a_search_by_identifier_reads_unique_keys_only(any_instance: Instance, digits: str) -> None:
    """Unit search by a MAC address, a certificate's serial or SHA-256, or a key's fingerprint: each read is a
    search on a unique key (never a scan of units, certificates or addresses), on both engines."""
    plans = plans_of(any_instance, lambda s: unit_history.serials_by_identifier(s, digits))
    assert len(plans) == (3 if len(digits) == 12 else 2), plans
    for plan in plans:
        assert not any(f"SCAN {t}" in plan for t in ("units", "superseded_certificates", "allocated_macs")), plan
        assert "Seq Scan" not in plan, plan


def test_a_windows_measurement_sums_read_its_hours_through_the_primary_key(any_instance: Instance) -> None:
    """The capability table's sums (added up by the database since session 12) read the window's hourly rows
    through the key that starts with the hour, never the whole rollup, on both engines."""
    scope = windows.Scope(AT, AT + timedelta(days=7))
    plans = plans_of(any_instance, lambda s: windows.measurement_sums(s, scope))
    assert len(plans) == 2, plans  # the newest limits, then the sums
    for plan in plans:
        assert "measurement_hours" in plan, plan
        assert "SCAN measurement_hours" not in plan and "Seq Scan on measurement_hours" not in plan, plan
