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
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from fabguard.service.core.instance import Instance
from fabguard.store import station_windows, unit_history
from fabguard.store.models import Fixture, Site, TestRecordRow

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
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(inst.db.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(inst.db.engine, "before_cursor_execute", grab)


def plan_of(inst: Instance, read: Callable[[Session], object]) -> str:
    """The plan the engine chooses for the one SELECT ``read`` makes."""
    with _statements(inst) as seen, inst.db.read() as s:
        read(s)
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
    plan = plan_of(
        any_instance,
        lambda s: station_windows.newest_records(
            s, AT, AT + timedelta(days=1), failed_only=True, limit=1000, **filters
        ),
    )
    assert index in plan, plan
    assert "SCAN test_records" not in plan and "Seq Scan" not in plan, plan


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
