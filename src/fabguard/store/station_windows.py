"""Per-station window queries (the dashboard's station view) and the bounded reads of stored test
records that figures without a rollup need (a measurement's distribution, one order's capability, the
units that failed a step).

Rollup sums come from ``windows.window_rows`` (whole hours from the hour rollups); record reads take
at most ``limit`` of the newest records through an index (``ix_test_records_received_at``,
``ix_test_records_serial_site_id``, ``units.order_id``; failed ones through the partial indexes on failed
records, ``ix_test_records_failed_*``), never a scan of every record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fabguard.analytics.production import YieldStats
from fabguard.store.analytics_models import StatsHour, StatsMinute, YieldHour, YieldMinute
from fabguard.store.models import FAILED_RECORD, RecordDigest, TestRecordRow, Unit
from fabguard.store.upserts import among
from fabguard.store.windows import Scope, window_rows

_YIELD_COLUMNS = ("units", "tests", "first_pass", "final_pass", "retested")


@dataclass(frozen=True)
class StoredRecord:
    """A stored test record as the sample reads need it: one column of its digest (``digest``:
    ``measured`` or ``failed_steps``, ``store.models.RecordDigest``) or, only where it has no digest
    (stored before they existed), its JSON body instead."""

    id: int
    serial: str
    fixture_id: str
    site_id: str
    outcome: str
    received_at: datetime
    record_json: str | None
    digest: str | None


Digest = Literal["measured", "failed_steps"]


def yield_by_fixture(s: Session, scope: Scope) -> dict[tuple[str, str], YieldStats]:
    """(site, fixture) -> the yield of the units first tested there in the scope."""
    t = window_rows(scope, YieldMinute.__table__, YieldHour.__table__, ("site_id", "fixture_id", *_YIELD_COLUMNS))
    query = select(t.c.site_id, t.c.fixture_id, *(func.sum(t.c[c]) for c in _YIELD_COLUMNS)).group_by(
        t.c.site_id, t.c.fixture_id
    )
    return {(site, fx): YieldStats(*(int(x or 0) for x in rest)) for site, fx, *rest in s.execute(query)}


def counts_by_fixture(s: Session, scope: Scope, kind: str) -> dict[tuple[str, str], int]:
    """(site, fixture) -> events of ``kind`` in the scope (tests: every outcome)."""
    t = window_rows(
        scope,
        StatsMinute.__table__,
        StatsHour.__table__,
        ("site_id", "fixture_id", "n"),
        extra=lambda table: [table.c.kind == kind],
    )
    query = select(t.c.site_id, t.c.fixture_id, func.sum(t.c.n)).group_by(t.c.site_id, t.c.fixture_id)
    return {(site, fx): int(n) for site, fx, n in s.execute(query)}


_HEAD = (
    TestRecordRow.id,
    TestRecordRow.serial,
    TestRecordRow.fixture_id,
    TestRecordRow.site_id,
    TestRecordRow.outcome,
    TestRecordRow.received_at,
)


def _records(s: Session, rows: Any, digest: Digest) -> list[StoredRecord]:
    """``rows`` (``_HEAD``) with their digests' ``digest`` column, read by primary key, and the bodies of
    those without one."""
    heads = list(rows)
    ids = [row[0] for row in heads]
    d, t = RecordDigest, TestRecordRow
    digests: dict[int, str | None] = {}
    if ids:
        digests.update(s.execute(select(d.record_id, getattr(d, digest)).where(among(s, d.record_id, ids))).all())
    missing = [i for i in ids if i not in digests]
    bodies: dict[int, str] = {}
    if missing:
        bodies.update(s.execute(select(t.id, t.record_json).where(among(s, t.id, missing))).all())
    return [
        StoredRecord(id_, serial, fixture_id, site_id, outcome, at, bodies.get(id_), digests.get(id_))
        for id_, serial, fixture_id, site_id, outcome, at in heads
    ]


def newest_records(
    s: Session,
    since: datetime,
    until: datetime,
    *,
    site_id: str | None = None,
    fixture_id: str | None = None,
    failed_only: bool = False,
    limit: int,
    digest: Digest = "measured",
) -> list[StoredRecord]:
    """Up to ``limit`` of the newest records received in ``[since, until)`` (of a site, a fixture, only
    failed ones), oldest first, with their digest's ``digest`` column."""
    t = TestRecordRow
    query = select(*_HEAD).where(t.received_at >= since, t.received_at < until)
    if site_id is not None:
        query = query.where(t.site_id == site_id)
    if fixture_id is not None:
        query = query.where(t.fixture_id == fixture_id)
    if failed_only:  # said as the partial indexes on failed records say it, so the planners use them
        query = query.where(text(FAILED_RECORD))
    rows = s.execute(query.order_by(t.received_at.desc(), t.id.desc()).limit(limit)).all()
    return _records(s, reversed(rows), digest)


def order_unit_records(s: Session, order_id: str, site_id: str, *, limit: int) -> tuple[int, list[StoredRecord]]:
    """The order's newest ``limit`` units (how many there were) and the latest test record at the order's
    site of each, oldest first, with their digest's ``measured`` column."""
    serials = list(
        s.execute(select(Unit.serial).where(Unit.order_id == order_id).order_by(Unit.id.desc()).limit(limit)).scalars()
    )
    t = TestRecordRow
    newest = select(func.max(t.id)).where(t.serial.in_(serials), t.site_id == site_id).group_by(t.serial)
    rows = s.execute(select(*_HEAD).where(t.id.in_(newest.scalar_subquery())).order_by(t.id)).all()
    return len(serials), _records(s, rows, "measured")
