"""The database handle and the event log: engine set-up for SQLite (WAL, immediate transactions) and PostgreSQL.

:class:`Database` opens transactions. The functions work in the caller's transaction: appending events
(each one also a ledger leaf, its Merkle subtrees stored beside it, hashed with ``fabguard.ledger``),
taking units of an order's quota atomically, counting events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fabguard.domain.errors import Unavailable
from fabguard.ledger import merkle
from fabguard.ledger.entry import encode_entry
from fabguard.store.models import Counter, Event, LedgerNode, Order

EVENT_COUNTER = "events"
SQLITE_POOL = 48


class Database:
    """One engine and its session factory. Thread-safe; share one per process."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            # Keep a connection for every thread that may read at once (the server's 40 request threads,
            # the writer, the background workers): a connection past the pool is opened per checkout and
            # closed after, re-running its pragmas with a cold page cache. (No change in units/s measured.)
            size = max(pool_size, SQLITE_POOL)
            self.engine = create_engine(url, pool_size=size, max_overflow=size // 2, pool_timeout=60)
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=60
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = self.engine.execution_options(fabguard_readonly=True)  # made once: it is an engine proxy
        self._writer = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A read-write transaction: committed on success, rolled back on any exception.

        A database that cannot be reached or cannot take writes now raises ``Unavailable`` (503)."""
        with _outage_is_unavailable():
            if self._writer is None:
                with self._sessions.begin() as session:
                    yield session
                return
            # SQLite has one writer at a time anyway. Queueing writers of this process on a lock, rather
            # than in SQLite's sleep-and-retry busy handler, keeps waits fair (no multi-second p99) and
            # keeps waiting threads from holding pooled connections. Correctness still rests on SQLite's lock.
            with self._writer, self._sessions.begin() as session:
                yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (on SQLite it takes no write lock)."""
        session = Session(bind=self._reader, expire_on_commit=False)
        try:
            with _outage_is_unavailable(), session.begin():
                yield session
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


# SQLSTATEs of a passing outage, worth sending the same request again for: a connection exception (08),
# a serialization failure or deadlock (40001, 40P01), out of disk, memory or connections (53100, 53200,
# 53300), the server shutting down, crashed or starting (57P01-57P03), a read-only transaction (25006:
# a standby, before or while it is promoted), a lock not available (55P03). Any other error, psycopg's
# OperationalError class included (program limits, savepoints, authentication...), is a bug or a
# misconfiguration and stays a 500 with its traceback.
_OUTAGE_STATES = ("08", "40001", "40P01", "53100", "53200", "53300", "57P01", "57P02", "57P03", "25006", "55P03")
_CONTENDED_STATES = ("40001", "40P01")


def _outage_state(exc: DBAPIError) -> str | None:
    """The SQLSTATE that makes ``exc`` a passing outage ("08" for a lost connection), else None."""
    if exc.connection_invalidated:
        return "08"
    orig = exc.orig
    if type(orig).__module__.startswith("psycopg"):
        state = str(getattr(orig, "sqlstate", None) or "")
        if not state and isinstance(exc, OperationalError):  # the client's side: no connection to be had
            return "08"
        return state if state.startswith(_OUTAGE_STATES) else None
    # SQLite: only a lock held past the busy timeout; any other error there is the file's or a bug.
    return "55P03" if isinstance(exc, OperationalError) and "database is locked" in str(orig) else None


@contextmanager
def _outage_is_unavailable() -> Iterator[None]:
    """Turn a database outage into ``Unavailable``; any other database error stays what it is (a bug)."""
    try:
        yield
    except DBAPIError as exc:
        state = _outage_state(exc)
        if state is None:
            raise
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise Unavailable(
            f"the database is unavailable ({reason[:200]}); send the request again",
            contended=state in _CONTENDED_STATES,
        ) from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN IMMEDIATE below is what runs.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL survives a killed process; only an OS crash can lose the newest commits.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades later can fail with
        # SQLITE_BUSY without waiting, where an immediate one queues behind busy_timeout.
        if conn.get_execution_options().get("fabguard_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


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


def append_events(session: Session, events: Sequence[NewEvent]) -> list[int]:
    """Append ``events``, in order, in the caller's transaction; returns their sequence numbers.

    One counter update for them all, one multi-row insert of the events and one of the Merkle nodes
    they complete: what a batch upload of test records costs stays a few statements, not a few per
    record. The ledger is the same as if they had been appended one at a time.
    """
    if not events:
        return []
    session.flush()  # the caller's pending rows go first (a record before the event naming it)
    last = int(
        session.execute(
            update(Counter)
            .where(Counter.name == EVENT_COUNTER)
            .values(value=Counter.value + len(events))
            .returning(Counter.value)
        ).scalar_one()
    )
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
    session.execute(insert(Event), rows)
    _append_leaves(session, first - 1, leaves)
    return list(range(first, last + 1))


def _append_leaves(session: Session, start: int, leaves: Sequence[bytes]) -> None:
    """Store the leaf hashes (at indexes ``start``, ``start + 1``, ...) and every complete subtree they
    complete: the Merkle tree grows with the log. A left sibling made in this batch is in ``made``; those
    from before (a few, along the tree's right edge) are read from the table in one statement."""
    before = _siblings_before(start, len(leaves))
    stored: dict[tuple[int, int], bytes] = {}
    if before:
        rows = session.execute(
            select(LedgerNode.level, LedgerNode.idx, LedgerNode.hash).where(
                or_(*(and_(LedgerNode.level == level, LedgerNode.idx == idx) for level, idx in before))
            )
        )
        stored = {(level, idx): h for level, idx, h in rows}
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
    session.execute(insert(LedgerNode), [{"level": level, "idx": idx, "hash": h} for (level, idx), h in made.items()])


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


def take_quota(session: Session, order_id: str, units: int) -> bool:
    """Take ``units`` of the order's quota at once; False (and nothing taken) when fewer are left."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.used + units <= Order.quota)
        .values(used=Order.used + units)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def event_count(session: Session) -> int:
    return int(session.execute(select(Counter.value).where(Counter.name == EVENT_COUNTER)).scalar_one())
