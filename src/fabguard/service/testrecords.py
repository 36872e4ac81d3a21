"""Per-unit test records from fixtures: kept per serial, never overwritten; a retest adds a record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from fabguard.domain.errors import FabGuardError, InvalidRequest
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.testrecord import TestRecordInvalid, parse_openhtf_record
from fabguard.service.events import record_refusal
from fabguard.service.instance import Instance
from fabguard.store.db import append_event
from fabguard.store.models import TestRecordRow


@dataclass(frozen=True)
class StoredRecord:
    id: int
    serial: str
    outcome: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "serial": self.serial, "outcome": self.outcome}


def record_test(inst: Instance, fixture: FixtureFacts, data: Any) -> StoredRecord:
    """Check and store one OpenHTF-shaped record uploaded by ``fixture``; a bad record is refused and logged."""
    try:
        record = parse_openhtf_record(
            data, max_phases=inst.limits.max_phases, max_measurements=inst.limits.max_measurements
        )
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if len(raw) > inst.limits.max_test_record_bytes:
            raise TestRecordInvalid(f"a test record may be at most {inst.limits.max_test_record_bytes} bytes")
    except FabGuardError as exc:
        serial = data.get("dut_id") if isinstance(data, dict) else None
        record_refusal(
            inst,
            "test.refused",
            exc,
            fixture_id=fixture.id,
            serial=serial if isinstance(serial, str) and len(serial) <= 64 and serial.isprintable() else None,
        )
        raise
    now = inst.clock()
    with inst.db.transaction() as s:
        row = TestRecordRow(
            serial=record.serial.value,
            fixture_id=fixture.id,
            station_id=record.station_id,
            outcome=record.outcome.value,
            start_ms=record.start_ms,
            end_ms=record.end_ms,
            measurement_count=len(record.measurements),
            received_at=now,
            record_json=raw,
        )
        s.add(row)
        s.flush()
        append_event(
            s,
            "test.recorded",
            at=now,
            actor=f"fixture:{fixture.id}",
            fixture_id=fixture.id,
            serial=record.serial.value,
            detail={
                "record_id": row.id,
                "outcome": record.outcome.value,
                "station_id": record.station_id,
                "site_id": fixture.site_id,
            },
        )
        return StoredRecord(row.id, row.serial, row.outcome)


def record_tests(inst: Instance, fixture: FixtureFacts, records: Any) -> list[dict[str, object]]:
    """Batch upload: each record is checked and stored on its own."""
    if not isinstance(records, list):
        raise InvalidRequest("records must be a list")
    if len(records) > inst.limits.max_batch_records:
        raise InvalidRequest(
            f"a batch may hold at most {inst.limits.max_batch_records} records", code="batch_too_large"
        )
    out: list[dict[str, object]] = []
    for data in records:
        try:
            out.append({"status": "stored", **record_test(inst, fixture, data).to_dict()})
        except FabGuardError as exc:
            out.append({"status": "refused", **exc.to_dict()})
    return out


def records_for_serial(inst: Instance, serial: str) -> list[dict[str, object]]:
    with inst.db.read() as s:
        rows = s.execute(
            select(TestRecordRow).where(TestRecordRow.serial == serial).order_by(TestRecordRow.id)
        ).scalars()
        return [
            {
                "id": r.id,
                "serial": r.serial,
                "fixture_id": r.fixture_id,
                "station_id": r.station_id,
                "outcome": r.outcome,
                "start_time_millis": r.start_ms,
                "end_time_millis": r.end_ms,
                "measurements": r.measurement_count,
                "received_at": r.received_at.isoformat(),
            }
            for r in rows
        ]
