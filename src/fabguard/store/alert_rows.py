"""Stored alerts: ``AlertRow`` to and from ``Alert``; reading them, and writing what a folded batch changed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, not_, select
from sqlalchemy.orm import Session

from fabguard.analytics.alerts import AckState, Alert, Severity
from fabguard.store.analytics_models import AlertRow
from fabguard.store.upserts import among, among_size, chunks, upsert


def alert_from_row(r: AlertRow) -> Alert:
    return Alert(
        id=r.id,
        kind=r.kind,
        severity=Severity(r.severity),
        message=r.message,
        evidence=tuple(json.loads(r.evidence)),
        count=r.count,
        first_at=r.first_at,
        last_at=r.last_at,
        order_id=r.order_id,
        site_id=r.site_id,
        fixture_id=r.fixture_id,
        acknowledged_by=r.acked_by if r.acked_up_to is not None and r.acked_up_to >= r.last_seq else None,
    )


def _alert_row(a: Alert, acked_by: str | None, acked_up_to: int | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "severity": int(a.severity),
        "message": a.message,
        "order_id": a.order_id,
        "site_id": a.site_id,
        "fixture_id": a.fixture_id,
        "count": a.count,
        "evidence": json.dumps(list(a.evidence)),
        "first_at": a.first_at,
        "last_at": a.last_at,
        "last_seq": a.last_seq,
        "acked_by": acked_by,
        "acked_up_to": acked_up_to,
    }


def _acknowledged() -> ColumnElement[bool]:
    """An alert acknowledged up to its newest evidence (``alert_from_row``'s ``acknowledged_by``)."""
    return and_(
        AlertRow.acked_by.is_not(None), AlertRow.acked_up_to.is_not(None), AlertRow.acked_up_to >= AlertRow.last_seq
    )


def listed(s: Session, *, site_id: str | None = None, open_only: bool = False, limit: int | None = None) -> list[Alert]:
    """The alerts in the dashboard's order (open first, then most severe, newest, by id),
    of one site or all, open ones only or all, the first ``limit``: sorted and cut by the database, so a
    page costs its rows, not the alerts ever raised."""
    q = select(AlertRow)
    if site_id is not None:
        q = q.where(AlertRow.site_id == site_id)
    if open_only:
        q = q.where(not_(_acknowledged()))
    acked_last = case((_acknowledged(), 1), else_=0)
    q = q.order_by(acked_last, AlertRow.severity.desc(), AlertRow.last_at.desc(), AlertRow.id)
    return [alert_from_row(r) for r in s.execute(q.limit(limit)).scalars()]


def found(s: Session, alert_id: str) -> Alert | None:
    row = s.get(AlertRow, alert_id)
    return alert_from_row(row) if row is not None else None


def open_counts(s: Session, *, site_id: str | None = None) -> dict[tuple[str, str], int]:
    """Open alerts by kind and severity label, counted by the database."""
    q = select(AlertRow.kind, AlertRow.severity, func.count()).where(not_(_acknowledged()))
    if site_id is not None:
        q = q.where(AlertRow.site_id == site_id)
    rows = s.execute(q.group_by(AlertRow.kind, AlertRow.severity)).all()
    return {(kind, Severity(severity).label): n for kind, severity, n in rows}


def stored(s: Session, ids: Sequence[str]) -> dict[str, tuple[Alert, AckState]]:
    """The stored alerts of these ids (those there), with who acknowledged each up to which seq."""
    out: dict[str, tuple[Alert, AckState]] = {}
    for chunk in chunks(sorted(ids), among_size(s)):
        for r in s.execute(select(AlertRow).where(among(s, AlertRow.id, chunk))).scalars():
            out[r.id] = (alert_from_row(r), (r.acked_by, r.acked_up_to))
    return out


def write_alerts(s: Session, changed: Iterable[tuple[Alert, AckState]]) -> list[Alert]:
    """Store these alerts with their acknowledgement state (replacing the rows there); returns them as
    read back (acknowledged when the acknowledgement covers their newest evidence)."""
    out = []
    written = []
    for alert, (by, up_to) in changed:
        row = _alert_row(alert, by, up_to)
        out.append(alert_from_row(AlertRow(**row)))
        written.append(row)
    upsert(s, AlertRow, ("id",), written)
    return out
