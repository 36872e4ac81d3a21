"""The database handle: engine set-up for SQLite (WAL, immediate transactions) and PostgreSQL, and which
database errors are a passing outage (``Unavailable``, 503) rather than a bug.

:class:`Database` opens transactions; the event log is ``store.eventlog``, quotas ``store.quota``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fabguard.domain.errors import ConfigurationError, Unavailable

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
            require_driver(url)
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

    def read_value(self, sql: str) -> Any:
        """The first column of the first row of ``sql``, read on a pooled connection without a session or an
        explicit transaction (SQLite runs it in autocommit; PostgreSQL's implicit one is rolled back as the
        connection goes back to the pool): the cheapest read there is, for a check made on every request."""
        driver_error = self.engine.dialect.loaded_dbapi.Error
        with _outage_is_unavailable():
            try:  # the driver's own errors, connecting included, as SQLAlchemy's (what the outage check reads)
                conn = self.engine.raw_connection()
                try:
                    cursor = conn.cursor()
                    try:
                        cursor.execute(sql)
                        row = cursor.fetchone()
                    finally:
                        cursor.close()
                finally:
                    conn.close()
            except driver_error as exc:
                raise DBAPIError.instance(sql, None, exc, driver_error) from exc
        return None if row is None else row[0]

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


def require_driver(url: str) -> None:
    """Refuse a database URL whose driver is not installed, naming what to install: the PostgreSQL driver
    (psycopg) is the ``postgres`` extra, not a dependency of an SQLite install. Imports the driver."""
    parsed = make_url(url)
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        extra = " (pip install 'fabguard[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise ConfigurationError(
            f"the database driver for {parsed.drivername} URLs is not installed{extra}: {exc}"
        ) from None


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
