"""The audit trail: the event log and a unit's test records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from fabguard.api.deps import Count, Inst, Reader
from fabguard.api.parsing import Timestamp
from fabguard.api.responses.audit import LedgerEvent, UnitListed, UnitTestRecord
from fabguard.service.core import events
from fabguard.service.provisioning import testrecords, units

router = APIRouter(tags=["audit"])


@router.get("/api/v1/events", response_model=list[LedgerEvent])
def list_events(
    inst: Inst,
    _: Reader,
    after: Count = 0,
    limit: Count = 100,
    kind: str | None = None,
    order_id: str | None = None,
    since: Annotated[Timestamp | None, Query(description="Only events at or after this time (RFC 3339)")] = None,
) -> list[dict[str, Any]]:
    """The decision log, oldest first, a page at a time: ask again with ``after`` set to the last ``seq``
    seen to read on (``fabguard events --follow`` does, every second)."""
    found = events.list_events(inst, after=after, limit=max(limit, 1), kind=kind, order_id=order_id, since=since)
    return [dict(e) for e in found]


@router.get("/api/v1/units", response_model=list[UnitListed])
def list_units(
    inst: Inst,
    _: Reader,
    order_id: Annotated[str | None, Query(max_length=63)] = None,
    product_id: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=units.MAX_LIST)] = 100,
) -> list[dict[str, object]]:
    """Provisioned units (of one order or product), newest first: serial, issuing CA, certificate, state."""
    return [u.to_dict() for u in units.list_units(inst, order_id=order_id, product_id=product_id, limit=limit)]


@router.get("/api/v1/units/{serial}/test-records", response_model=list[UnitTestRecord])
def unit_test_records(inst: Inst, serial: str, _: Reader) -> list[dict[str, object]]:
    return testrecords.records_for_serial(inst, serial)
