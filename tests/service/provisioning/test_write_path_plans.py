"""The provisioning write path costs the same at 5M stored units as at none (issue 28 item 5), on both engines:
every statement the writer's transactions run (a test record's upload, an identity allocation, a unit
provisioned with and without identity pools) reaches the tables that grow with the units and events through
an index, and none counts or aggregates rows of a growing table. Plans are read with EXPLAIN on the engine
itself (PostgreSQL with sequential scans priced out, so a plan that still scans has no index to use; SQLite
keeps no statistics, so its plan at a few rows is its plan at millions). bench/growth.py times the same path
at 0, 1M and 5M units."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from fabguard.api.parsing import unit_request
from fabguard.domain.idempotency import IdempotencyKey
from fabguard.domain.values import OrderId
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import issuance
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from fabguard.store.models import Order
from tests.service.provisioning.test_identities import DEVICES, FIXTURE, POOL, prepare, provision

# Tables with rows per unit, record or event: what a scan or an aggregate over would grow with the database.
GROWING = {
    "units", "test_records", "events", "ledger_nodes", "unit_identities", "allocated_macs", "idempotency_keys",
    "superseded_certificates", "field_nonces", "field_checks",
}  # fmt: skip
# A count or a sum grows with the rows it adds up; a unit's latest record (max of its ids, through its index)
# is bounded by the unit's own retests.
_AGGREGATE = re.compile(r"\b(count|sum|avg)\s*\(", re.IGNORECASE)
_FROM = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+([a-z_]+)", re.IGNORECASE)


@contextmanager
def statements(inst: Instance) -> Iterator[list[tuple[str, Any]]]:
    """Every single (not executemany) statement run on the engine inside the block, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if not executemany:
            seen.append((statement, params))

    event.listen(inst.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(inst.db.engine, "before_cursor_execute", record)


def plan(inst: Instance, statement: str, params: Any) -> list[str]:
    raw = inst.db.engine.raw_connection()
    try:
        cur: Any = raw.cursor()
        if inst.db.is_sqlite:
            cur.execute("EXPLAIN QUERY PLAN " + statement, params)
            return [str(row[3]) for row in cur.fetchall()]
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("EXPLAIN " + statement, params)
        return [str(row[0]) for row in cur.fetchall()]
    finally:
        raw.rollback()
        raw.close()


def _scans(inst: Instance, lines: list[str]) -> list[str]:
    """The plan's lines that read a growing table whole."""
    if inst.db.is_sqlite:  # "SCAN units" or "SCAN units USING [COVERING] INDEX ...": every row either way
        return [ln for ln in lines if (m := re.match(r"SCAN (\w+)", ln.strip())) and m.group(1) in GROWING]
    return [ln for ln in lines if (m := re.search(r"(?:Seq Scan|Full Scan) on (\w+)", ln)) and m.group(1) in GROWING]


def assert_flat(inst: Instance, act: Callable[[], object]) -> int:
    """Run ``act``; each of its statements on a growing table uses an index and aggregates nothing.
    Returns how many statements were checked."""
    with statements(inst) as seen:
        act()
    checked = 0
    for statement, params in seen:
        tables = {t.lower() for t in _FROM.findall(statement)} & GROWING
        if not tables or statement.lstrip().upper().startswith(("INSERT", "BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
            continue
        assert not _AGGREGATE.search(statement), f"an aggregate over {sorted(tables)} on the write path: {statement}"
        lines = plan(inst, statement, params)
        assert not _scans(inst, lines), f"{statement}\nscans a growing table:\n" + "\n".join(lines)
        checked += 1
    return checked


def test_provisioning_without_pools_reads_every_growing_table_through_an_index(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst)
    provision(inst, "SN-1")  # the first of the order, then one after it (the ledger's siblings exist)
    assert assert_flat(inst, lambda: provision(inst, "SN-2")) >= 4


def test_keyed_provisioning_reads_its_idempotency_keys_through_an_index(any_instance: Instance) -> None:
    """A unit sent with an Idempotency-Key: the writer looks its key up (and finds another fixture's key and
    an older key of its own beside it) through the primary key, then answers a resend from it."""
    inst = any_instance
    prepare(inst)
    provision(inst, "SN-1")

    def keyed(serial: str) -> Answer:
        provision(inst, serial)  # its test record, and a first issue without a key
        request = unit_request("po-a", serial, DEVICES[serial].csr_pem(), max_csr_bytes=8192)
        key = Keyed.of(FIXTURE.id, IdempotencyKey.parse(f"key-{serial}"), "POST /api/v1/units/provision", serial)
        return issuance.provision_unit_once(inst, FIXTURE, request, key)

    assert keyed("SN-2").status == 200  # the first issue replayed, its answer now kept under the key
    assert assert_flat(inst, lambda: keyed("SN-3")) >= 4
    again = keyed("SN-3")
    assert again.replayed and again.status == 200


# Identities drawn when the unit is provisioned: no serial format, so a station's own serial is taken.
DRAWN_AT_PROVISIONING = {"macs": {"prefix": "00-1B-63", "count": 40}, "matter": {"vendor_id": 0xFFF1, "product_id": 1}}


def test_provisioning_that_draws_identities_counts_nothing(any_instance: Instance) -> None:
    """The order's allocated identities are a figure kept on the order (migration 0030), not a count of the
    order's ``unit_identities`` rows in every transaction: that count grew with the order."""
    inst = any_instance
    prepare(inst, DRAWN_AT_PROVISIONING)
    provision(inst, "SN-1")
    assert assert_flat(inst, lambda: provision(inst, "SN-2")) >= 4
    with inst.db.read() as s:
        assert s.get(Order, "po-a").identities_allocated == 2  # type: ignore[union-attr]


def test_provisioning_an_allocated_unit_counts_nothing(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, POOL)
    first, second = (allocate_unit(inst, FIXTURE, OrderId("po-a"), None) for _ in range(2))
    assert isinstance(first, Allocated) and isinstance(second, Allocated)
    provision(inst, first.identity.serial)
    assert assert_flat(inst, lambda: provision(inst, second.identity.serial)) >= 4


def test_an_identity_allocation_counts_nothing(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, POOL)
    allocate_unit(inst, FIXTURE, OrderId("po-a"), None)
    assert assert_flat(inst, lambda: allocate_unit(inst, FIXTURE, OrderId("po-a"), None)) >= 2
    allocate_unit(inst, FIXTURE, OrderId("po-b"), None)
    with inst.db.read() as s:
        assert [s.get(Order, o).identities_allocated for o in ("po-a", "po-b")] == [2, 1]  # type: ignore[union-attr]
