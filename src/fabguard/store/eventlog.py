"""The event log, in the caller's transaction: appending events (each one also a ledger leaf, its Merkle
subtrees stored beside it, hashed with ``fabguard.ledger``) and counting them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from fabguard.ledger import merkle
from fabguard.ledger.entry import encode_entry
from fabguard.store.models import Counter, Event, LedgerNode

EVENT_COUNTER = "events"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: everything but its sequence number, which the log hands out."""

    kind: str
    at: datetime
    actor: str | None = None
    order_id: str | None = None
    fixture_id: str | None = None
    serial: str | None = None
    code: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def append_event(
    session: Session,
    kind: str,
    *,
    at: datetime,
    actor: str | None = None,
    order_id: str | None = None,
    fixture_id: str | None = None,
    serial: str | None = None,
    code: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append an event in the caller's transaction and return its sequence number.

    The counter row is locked until the transaction ends, so numbers are handed out in commit order
    and a rolled-back transaction gives its number back: the sequence has no gap.
    """
    event = NewEvent(kind, at, actor, order_id, fixture_id, serial, code, detail or {})
    return append_events(session, [event])[0]


# Built once (every provisioning group and every event runs them; building them cost more than running them:
# issue 28's profile), and on the tables, not the ORM classes: rows go in as one Core executemany.
_counters = cast(Table, Counter.__table__).c
_TAKE_SEQUENCE = (
    update(cast(Table, Counter.__table__))
    .where(_counters.name == EVENT_COUNTER)
    .values(value=_counters.value + bindparam("taken"))
    .returning(_counters.value)
)
_INSERT_EVENTS = insert(cast(Table, Event.__table__))
_INSERT_NODES = insert(cast(Table, LedgerNode.__table__))


def append_events(session: Session, events: Sequence[NewEvent]) -> list[int]:
    """Append ``events``, in order, in the caller's transaction; returns their sequence numbers.

    One counter update for them all, one multi-row insert of the events and one of the Merkle nodes
    they complete: what a batch upload of test records costs stays a few statements, not a few per
    record. The ledger is the same as if they had been appended one at a time.
    """
    if not events:
        return []
    session.flush()  # the caller's pending rows go first (a record before the event naming it)
    last = int(session.execute(_TAKE_SEQUENCE, {"taken": len(events)}).scalar_one())
    first = last - len(events) + 1
    rows, leaves = [], []
    for seq, e in enumerate(events, start=first):
        entry = encode_entry(
            seq=seq,
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            order_id=e.order_id,
            fixture_id=e.fixture_id,
            serial=e.serial,
            code=e.code,
            detail=e.detail,
        )
        rows.append(
            {
                "seq": seq,
                "at": e.at,
                "kind": e.kind,
                "actor": e.actor,
                "order_id": e.order_id,
                "fixture_id": e.fixture_id,
                "serial": e.serial,
                "code": e.code,
                "detail": json.dumps(e.detail, sort_keys=True, separators=(",", ":")),
                "entry": entry,
            }
        )
        leaves.append(merkle.leaf_hash(entry))
    session.execute(_INSERT_EVENTS, rows)
    _append_leaves(session, first - 1, leaves)
    return list(range(first, last + 1))


def _append_leaves(session: Session, start: int, leaves: Sequence[bytes]) -> None:
    """Store the leaf hashes (at indexes ``start``, ``start + 1``, ...) and every complete subtree they
    complete: the Merkle tree grows with the log. A left sibling made in this batch is in ``made``; those
    from before (a few, along the tree's right edge) are read from the table in one statement."""
    before = _siblings_before(start, len(leaves))
    stored: dict[tuple[int, int], bytes] = {}
    if before:
        # Textual SQL: its cache key is its text, the same for the same number of siblings (an expression tree
        # built per group cost more to key than to run). Each pair is a primary-key lookup.
        pairs = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(len(before)))
        params = {f"{name}{n}": value for n, pair in enumerate(before) for name, value in zip("li", pair, strict=True)}
        sql = f"SELECT level, idx, hash FROM ledger_nodes WHERE {pairs}"  # noqa: S608 - placeholders only
        rows = session.execute(text(sql), params)
        stored = {(level, idx): bytes(h) for level, idx, h in rows}
    made: dict[tuple[int, int], bytes] = {}
    for index, leaf in enumerate(leaves, start=start):
        made[(0, index)] = h = leaf
        level = 0
        while (index >> level) & 1:
            sibling = (level, (index >> level) - 1)
            left = made.get(sibling)
            if left is None:
                left = stored[sibling]
            h = merkle.node_hash(left, h)
            level += 1
            made[(level, index >> level)] = h
    session.execute(_INSERT_NODES, [{"level": level, "idx": idx, "hash": h} for (level, idx), h in made.items()])


def _siblings_before(start: int, count: int) -> list[tuple[int, int]]:
    """The left siblings that appending ``count`` leaves at ``start`` combines with but does not make."""
    made: set[tuple[int, int]] = set()
    before: list[tuple[int, int]] = []
    for index in range(start, start + count):
        made.add((0, index))
        level = 0
        while (index >> level) & 1:
            sibling = (level, (index >> level) - 1)
            if sibling not in made:
                before.append(sibling)
            level += 1
            made.add((level, index >> level))
    return before


def event_count(session: Session) -> int:
    return int(session.execute(select(Counter.value).where(Counter.name == EVENT_COUNTER)).scalar_one())
