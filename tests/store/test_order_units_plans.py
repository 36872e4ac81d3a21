"""An order's units are read newest first (or after an id) as one range of ``ix_units_order_id_id``
(migration 0032), on both engines: the order page's sample of its units, its units listing and the unit
list of one order. Through ``ix_units_order_id`` alone PostgreSQL read all of an old order's units and
sorted them, or walked the primary key backwards over every newer unit of other orders.

Plans as tests/store/test_dashboard_plans.py reads them: SQLite's ``EXPLAIN QUERY PLAN`` (no statistics: its
plan at a few rows is its plan at millions), PostgreSQL's ``EXPLAIN`` with sequential scans priced out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from fabguard.service.catalog import orders
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import units
from fabguard.store import station_windows
from fabguard.store.models import Fixture, Order, Product, Site, Unit

AT = datetime(2026, 12, 1, tzinfo=UTC)
OLD, NEW = "po-old", "po-new"


def _units(inst: Instance, old: int = 60, new: int = 5940) -> None:
    """An old order's units (1 %), then those of a newer order (ids after the old order's): on PostgreSQL, walking
    the primary key backwards over the newer ones would look cheap for a larger share (its estimate takes the
    order's units to be spread evenly over the ids), as it did at 1M units before the index (bench/PROFILE.md)."""
    with inst.db.transaction() as s:
        s.add(Product(id="p1", name="p1", key_types="ecdsa-p256", created_at=AT))
        s.add(Site(id="cm-a", name="cm-a", created_at=AT))
        s.flush()
        s.add(Fixture(id="fx-0", site_id="cm-a", created_at=AT))
        for order in (OLD, NEW):
            s.add(
                Order(
                    id=order, product_id="p1", site_id="cm-a", quota=10_000, state="active", valid_from=AT,
                    created_at=AT, created_by="test",
                )
            )  # fmt: skip
        s.flush()
        rows = [
            {
                "product_id": "p1", "serial": f"SN{i:06d}", "order_id": OLD if i < old else NEW, "fixture_id": "fx-0",
                "key_fingerprint": f"{i:064x}", "cert_serial": f"{i:048x}", "cert_sha256": f"{i + 1:064x}",
                "certificate_pem": "-", "issued_at": AT + timedelta(seconds=i),
            }
            for i in range(old + new)
        ]  # fmt: skip
        s.execute(insert(Unit), rows)
    if not inst.db.is_sqlite:
        with inst.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE units")
            conn.commit()


def _plan_of_units_read(inst: Instance, read: Callable[[], object]) -> str:
    """The plan the engine chooses for the one SELECT of ``read`` that reads ``units``."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM units" in statement:
            seen.append((statement, params))

    event.listen(inst.db.engine, "before_cursor_execute", grab)
    try:
        read()
    finally:
        event.remove(inst.db.engine, "before_cursor_execute", grab)
    assert len(seen) == 1, seen
    statement, params = seen[0]
    with inst.db.engine.connect() as conn:
        if inst.db.is_sqlite:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            return "\n".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", params).all()
        conn.rollback()
        return "\n".join(str(r[0]) for r in rows)


def _sample(inst: Instance) -> object:
    with inst.db.read() as s:
        return station_windows.order_unit_records(s, OLD, "cm-a", limit=20)


READS: dict[str, Callable[[Instance], object]] = {
    "the order page's sample of its newest units": _sample,
    "the order's units listing, after an id": lambda inst: orders.order_units(inst, OLD, after_id=10, limit=20),
    "the unit list of one order, newest first": lambda inst: units.list_units(inst, order_id=OLD, limit=20),
}


@pytest.mark.parametrize("read", sorted(READS))
def test_an_orders_units_by_id_are_one_range_of_the_order_id_id_index(any_instance: Instance, read: str) -> None:
    _units(any_instance)
    plan = _plan_of_units_read(any_instance, lambda: READS[read](any_instance))
    assert "ix_units_order_id_id" in plan, plan
    # No sort of the order's units (PostgreSQL's Sort, SQLite's temporary B-tree), no scan of the table, and
    # on PostgreSQL no filter on the order: the order and the id bound are the index's own conditions.
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    assert "Seq Scan" not in plan and "SCAN units" not in plan and "Filter" not in plan, plan


def test_the_reads_through_the_index_answer_the_old_orders_units(any_instance: Instance) -> None:
    _units(any_instance)
    newest = [u.serial for u in units.list_units(any_instance, order_id=OLD, limit=3)]
    assert newest == ["SN000059", "SN000058", "SN000057"]
    after = [u["serial"] for u in orders.order_units(any_instance, OLD, after_id=55, limit=100)]
    assert after == [f"SN0000{i}" for i in range(55, 60)]
    count, _ = _sample(any_instance)  # type: ignore[misc]
    assert count == 20
