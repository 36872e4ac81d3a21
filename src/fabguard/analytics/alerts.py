"""Alerts: what a detector raises, with a stable id so an acknowledgement outlives recomputation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum

# An alert names at most this many event seqs (the newest); ``count`` says how many there were.
MAX_EVIDENCE = 100


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


def alert_id(kind: str, *subject: str | None) -> str:
    """The same kind about the same subject (order, fixture, serial...) always gets the same id."""
    digest = hashlib.sha256("\x1f".join([kind, *(s or "" for s in subject)]).encode()).hexdigest()
    return f"{kind}.{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: str
    severity: Severity
    message: str
    evidence: tuple[int, ...]
    count: int
    first_at: datetime
    last_at: datetime
    order_id: str | None = None
    site_id: str | None = None
    fixture_id: str | None = None
    acknowledged_by: str | None = None

    @property
    def last_seq(self) -> int:
        return max(self.evidence) if self.evidence else 0

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity.label,
            "message": self.message,
            "order_id": self.order_id,
            "site_id": self.site_id,
            "fixture_id": self.fixture_id,
            "count": self.count,
            "evidence": list(self.evidence),
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "acknowledged": self.acknowledged,
            "acknowledged_by": self.acknowledged_by,
        }


def make_alert(
    kind: str,
    severity: Severity,
    message: str,
    seqs: Sequence[int],
    times: Sequence[datetime],
    *,
    subject: Iterable[str | None] = (),
    order_id: str | None = None,
    site_id: str | None = None,
    fixture_id: str | None = None,
) -> Alert:
    return Alert(
        id=alert_id(kind, *subject),
        kind=kind,
        severity=severity,
        message=message,
        evidence=tuple(sorted(seqs)[-MAX_EVIDENCE:]),
        count=len(seqs),
        first_at=min(times),
        last_at=max(times),
        order_id=order_id,
        site_id=site_id,
        fixture_id=fixture_id,
    )


def merge_alerts(old: Alert | None, hit: Alert) -> Alert:
    """``old`` with the evidence of ``hit`` (the same alert id) added: counts add, the newest
    ``MAX_EVIDENCE`` seqs are kept, the time span widens, the newer message and the higher severity win.

    Detectors raise hits as facts arrive; an alert is the merge of its hits, so it can be kept
    incrementally. An order, site or fixture named by only one of them is kept; two different ones
    (several fixtures) leave None.
    """
    if old is None:
        return hit
    newer = hit if hit.last_at >= old.last_at else old

    def same(a: str | None, b: str | None) -> str | None:
        return a if b is None or a == b else (b if a is None else None)

    return Alert(
        id=old.id,
        kind=old.kind,
        severity=max(old.severity, hit.severity),
        message=newer.message,
        evidence=tuple(sorted(set(old.evidence) | set(hit.evidence))[-MAX_EVIDENCE:]),
        count=old.count + hit.count,
        first_at=min(old.first_at, hit.first_at),
        last_at=max(old.last_at, hit.last_at),
        order_id=same(old.order_id, hit.order_id),
        site_id=same(old.site_id, hit.site_id),
        fixture_id=same(old.fixture_id, hit.fixture_id),
        acknowledged_by=old.acknowledged_by,
    )


def merge_all(hits: Iterable[Alert]) -> list[Alert]:
    """Hits merged per alert id, in the order each id first appeared."""
    merged: dict[str, Alert] = {}
    for hit in hits:
        merged[hit.id] = merge_alerts(merged.get(hit.id), hit)
    return list(merged.values())


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    alert_id: str
    up_to_seq: int
    actor: str


def with_acknowledgements(alerts: Iterable[Alert], acks: Iterable[Acknowledgement]) -> list[Alert]:
    """Mark alerts acknowledged when an acknowledgement covers their newest evidence.

    New evidence after the acknowledgement re-opens the alert: someone acknowledged what they saw,
    not what came later.
    """
    latest: dict[str, Acknowledgement] = {}
    for ack in acks:
        if ack.alert_id not in latest or ack.up_to_seq >= latest[ack.alert_id].up_to_seq:
            latest[ack.alert_id] = ack
    out: list[Alert] = []
    for alert in alerts:
        found = latest.get(alert.id)
        covered = found is not None and found.up_to_seq >= alert.last_seq
        out.append(replace(alert, acknowledged_by=found.actor if found is not None and covered else None))
    return out


# A stored alert's acknowledgement: who acknowledged it and up to which event seq (None, None: never).
AckState = tuple[str | None, int | None]
NOT_ACKED: AckState = (None, None)


def fold_batch_alerts(
    stored: Mapping[str, tuple[Alert, AckState]], hits: Sequence[Alert], acks: Sequence[Acknowledgement]
) -> list[tuple[Alert, AckState]]:
    """What a batch changes in the stored alerts: ``stored`` (by id, those ``hits`` and ``acks`` name) with
    each hit merged in and each acknowledgement of a known alert taken unless an older one than the one
    there; the alerts touched, sorted by id, with their acknowledgement state."""
    alerts = {i: alert for i, (alert, _) in stored.items()}
    acked = {i: state for i, (_, state) in stored.items()}
    touched: set[str] = set()
    for hit in hits:
        alerts[hit.id] = merge_alerts(alerts.get(hit.id), hit)
        touched.add(hit.id)
    for ack in acks:
        if ack.alert_id in alerts:
            previous = acked.get(ack.alert_id, NOT_ACKED)[1]
            if previous is None or ack.up_to_seq >= previous:
                acked[ack.alert_id] = (ack.actor, ack.up_to_seq)
                touched.add(ack.alert_id)
    return [(alerts[i], acked.get(i, NOT_ACKED)) for i in sorted(touched)]
