"""Stored alerts: ``AlertRow`` to and from ``Alert``, and writing what a folded batch changed in them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.analytics.alerts import AckState, Alert, Severity, fold_batch_alerts, ordered
from fabguard.analytics.fold import Fold
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


def all_alerts(s: Session) -> list[Alert]:
    """Every stored alert, open first (``ordered``)."""
    return ordered(alert_from_row(r) for r in s.execute(select(AlertRow)).scalars())


def write_alerts(s: Session, fold: Fold) -> list[Alert]:
    """Merge a batch's hits and acknowledgements into the stored alerts; returns the alerts changed, as they now stand."""
    ids = sorted({h.id for h in fold.hits} | {a.alert_id for a in fold.acks})
    if not ids:
        return []
    stored: dict[str, tuple[Alert, AckState]] = {}
    for chunk in chunks(ids, among_size(s)):
        for r in s.execute(select(AlertRow).where(among(s, AlertRow.id, chunk))).scalars():
            stored[r.id] = (alert_from_row(r), (r.acked_by, r.acked_up_to))
    out = []
    written = []
    for alert, (by, up_to) in fold_batch_alerts(stored, fold.hits, fold.acks):
        row = _alert_row(alert, by, up_to)
        out.append(alert_from_row(AlertRow(**row)))
        written.append(row)
    upsert(s, AlertRow, ("id",), written)
    return out
