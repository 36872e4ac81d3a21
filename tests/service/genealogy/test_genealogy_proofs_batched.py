"""A unit's page reads its ledger proofs' Merkle nodes at once (issue 28 item 5): its entries' proofs are
exactly those ``merkle_log.inclusion`` gives one by one, checkpointed or not, and the statements the page
runs do not grow with the ledger's size or the unit's entries (reading node by node cost about
4 log2(n) round trips per entry: seconds for a unit at 10M records on PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from fabguard.service.genealogy import unit_history
from fabguard.service.ledger import merkle_log
from tests.support import World, tested_device


@contextmanager
def _selects(world: World) -> Iterator[list[str]]:
    seen: list[str] = []
    me = threading.get_ident()  # the server's own threads (projector, workers) read meanwhile

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if threading.get_ident() == me and statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(world.inst.db.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(world.inst.db.engine, "before_cursor_execute", grab)


def _proofs_match(world: World, serial: str) -> int:
    """Check every entry's proof against ``merkle_log.inclusion``; the SELECTs the page ran."""
    with _selects(world) as seen:
        g = unit_history.genealogy(world.inst, serial)
    entries = g["ledger"]["entries"]
    assert entries
    for e in entries:
        size = e["inclusion"]["tree_size"] if e["inclusion"]["checkpointed"] else None
        assert {k: v for k, v in e["inclusion"].items() if k != "checkpointed"} == merkle_log.inclusion(
            world.inst, e["index"], size
        )
    return len(seen)


def test_a_units_proofs_are_read_at_once_and_equal_the_one_by_one_proofs(any_world: World) -> None:
    order = any_world.order(50, order_id="po-p")
    line = any_world.fixture("f1")
    device = tested_device(line, "SN-P-0", seed=1)
    line.provision(order, device.serial, device.csr_pem())
    small = _proofs_match(any_world, "SN-P-0")  # the current tree, no checkpoint yet
    merkle_log.make_checkpoint(any_world.inst)
    for i in range(1, 12):  # the ledger grows (and SN-P-0 gets entries after the checkpoint too)
        tested_device(line, f"SN-P-{i}", seed=i)
        tested_device(line, "SN-P-0", seed=100 + i)
    assert _proofs_match(any_world, "SN-P-0") == small  # more entries, a bigger tree: as many statements
