"""The audit trail: the event log and a unit's test records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from fabguard.api.deps import Count, Inst, Reader
from fabguard.api.responses.audit import LedgerEvent, UnitTestRecord
from fabguard.service.core import events
from fabguard.service.provisioning import testrecords

router = APIRouter(tags=["audit"])


@router.get("/api/v1/events", response_model=list[LedgerEvent])
def list_events(
    inst: Inst, _: Reader, after: Count = 0, limit: Count = 100, kind: str | None = None, order_id: str | None = None
) -> list[dict[str, Any]]:
    found = events.list_events(inst, after=after, limit=max(limit, 1), kind=kind, order_id=order_id)
    return [dict(e) for e in found]


@router.get("/api/v1/units/{serial}/test-records", response_model=list[UnitTestRecord])
def unit_test_records(inst: Inst, serial: str, _: Reader) -> list[dict[str, object]]:
    return testrecords.records_for_serial(inst, serial)
