"""Recording refusals (in their own transaction, after the refused one rolled back) and reading events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TypedDict

from sqlalchemy import select

from fabguard.domain.errors import FabGuardError
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import NewEvent, append_events
from fabguard.store.models import Event

# The actor of a refusal whose caller presented no credential it could be named by.
ANONYMOUS = "anonymous"


def refusal_event(
    kind: str,
    error: FabGuardError,
    *,
    at: datetime,
    actor: str | None = None,
    fixture_id: str | None = None,
    order_id: str | None = None,
    serial: str | None = None,
    detail: dict[str, object] | None = None,
) -> NewEvent:
    """The event that records a refusal: its code, its message in the detail, and who tried: ``actor``,
    else the fixture, else ``anonymous`` (a caller that presented nothing it could be named by)."""
    return NewEvent(
        kind,
        at,
        actor=actor or (f"fixture:{fixture_id}" if fixture_id else ANONYMOUS),
        fixture_id=fixture_id,
        order_id=order_id,
        serial=serial,
        code=error.code,
        detail={"message": error.message, **(detail or {})},
    )


def record_refusal(
    inst: Instance,
    kind: str,
    error: FabGuardError,
    *,
    actor: str | None = None,
    fixture_id: str | None = None,
    order_id: str | None = None,
    serial: str | None = None,
    detail: dict[str, object] | None = None,
) -> int:
    """Write a refusal event. The state change it refused was rolled back; this is all that stays."""
    event = refusal_event(
        kind,
        error,
        at=inst.clock(),
        actor=actor,
        fixture_id=fixture_id,
        order_id=order_id,
        serial=serial,
        detail=detail,
    )
    with inst.db.transaction() as s:
        return append_events(s, [event])[0]


class EventDict(TypedDict):
    """An event as the API and the CLI show it."""

    seq: int
    at: str
    kind: str
    actor: str | None
    order_id: str | None
    fixture_id: str | None
    serial: str | None
    code: str | None
    detail: dict[str, object]


def event_dict(e: Event) -> EventDict:
    return {
        "seq": e.seq,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "actor": e.actor,
        "order_id": e.order_id,
        "fixture_id": e.fixture_id,
        "serial": e.serial,
        "code": e.code,
        "detail": json.loads(e.detail),
    }


def list_events(
    inst: Instance,
    *,
    after: int = 0,
    limit: int = 100,
    kind: str | None = None,
    order_id: str | None = None,
    since: datetime | None = None,
) -> list[EventDict]:
    """Events after sequence number ``after`` (and at or after ``since``), oldest first, a page at most."""
    q = select(Event).where(Event.seq > after)
    if since is not None:
        q = q.where(Event.at >= since)
    if kind:
        q = q.where(Event.kind == kind)
    if order_id:
        q = q.where(Event.order_id == order_id)
    with inst.db.read() as s:
        return [
            event_dict(e) for e in s.execute(q.order_by(Event.seq).limit(min(limit, inst.limits.max_page))).scalars()
        ]
