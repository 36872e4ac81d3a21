"""Per-unit test records from fixtures: kept per serial, never overwritten; a retest adds a record.

A record's station is the fixture that uploaded it (its TLS client certificate says which), and its site
is that fixture's: only the orders of that site let it decide their units (the test gate,
``domain.issuance.passed_test``). The ``station_id`` the record's body names is kept as
``declared_station_id``, as the station said it, and is trusted for nothing.

A station may also send its own report as it is (ATML, TestStand XML, JUnit XML, CSV: a file may hold
several UUTs): ``record_test_file`` parses it with ``domain.testformats`` into the same model and
stores each record in OpenHTF's JSON shape, so analytics and the gate read it like any other."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from fabguard.analytics import record_digest
from fabguard.domain.errors import FabGuardError, InvalidRequest
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.testformats import FormatLimits, RecordTooLarge, openhtf_json, parse_test_records
from fabguard.domain.testrecord import (
    TestRecord,
    TestRecordInvalid,
    parse_openhtf_record,
    stored_rows,
    stored_text,
)
from fabguard.domain.values import recorded_serial
from fabguard.service.core.events import refusal_event
from fabguard.service.core.idempotency import Answer, Keyed, keep, take
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import NewEvent, append_events
from fabguard.store.models import RecordDigest, TestRecordRow

# An uploaded record as the API decoded it from JSON; its shape is checked here, record by record.
JsonObject = dict[str, object]


@dataclass(frozen=True)
class StoredRecord:
    id: int
    serial: str
    outcome: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "serial": self.serial, "outcome": self.outcome}


def _check(inst: Instance, data: JsonObject) -> tuple[TestRecord, str]:
    """The record's facts and its canonical JSON, or ``TestRecordInvalid``."""
    record = parse_openhtf_record(
        data, max_phases=inst.limits.max_phases, max_measurements=inst.limits.max_measurements
    )
    raw = stored_text(data)
    if len(raw) > inst.limits.max_test_record_bytes:
        raise TestRecordInvalid(f"a test record may be at most {inst.limits.max_test_record_bytes} bytes")
    return record, raw


def _row(fixture: FixtureFacts, record: TestRecord, raw: str, now: datetime) -> dict[str, object]:
    return {
        "serial": record.serial.value,
        "fixture_id": fixture.id,
        "site_id": fixture.site_id,
        "declared_station_id": record.declared_station_id,
        "outcome": record.outcome.value,
        "start_ms": record.start_ms,
        "end_ms": record.end_ms,
        "measurement_count": len(record.measurements),
        "received_at": now,
        "record_json": raw,
    }


def _insert(s: Session, rows: list[dict[str, object]], digests: list[dict[str, str | None]]) -> list[int]:
    """Insert the records and their digests; the records' ids, in order."""
    if not rows:
        return []
    ids = list(
        s.execute(insert(TestRecordRow).returning(TestRecordRow.id, sort_by_parameter_order=True), rows).scalars()
    )
    digest_rows = [{"record_id": i, **d} for i, d in zip(ids, digests, strict=True)]
    s.connection().execute(insert(cast(Table, RecordDigest.__table__)), digest_rows)  # Core: no ORM bookkeeping
    return ids


def _digest(data: JsonObject, record: TestRecord, raw: str, uploaded: bool) -> dict[str, str | None]:
    """The digest the dashboard's samples read (``store.models.RecordDigest``), from what the
    stored JSON ``raw`` reads as. An uploaded record's own check (``parse_openhtf_record`` of ``data``)
    already read it, in the upload's order; a station file's record is read from ``raw``."""
    if uploaded:
        failed_steps, measured = record_digest.uploaded(data, record)
    else:
        failed = record.outcome.value != "PASS"  # the dashboard's failed records (``store.models.FAILED_RECORD``)
        failed_steps, measured = record_digest.digest(*stored_rows(json.loads(raw)), failed)
    return {"failed_steps": failed_steps, "measured": measured}


def _refusal(fixture: FixtureFacts, data: JsonObject, exc: FabGuardError, at: datetime) -> NewEvent:
    serial = recorded_serial(data.get("dut_id"))
    return refusal_event("test.refused", exc, at=at, fixture_id=fixture.id, serial=serial)


Outcome = list[StoredRecord | FabGuardError]
# How a keyed request's answer is made from its outcome: HTTP status and JSON body.
Answering = tuple[Keyed, Callable[[Outcome], tuple[int, dict[str, object]]]]


Checked = tuple[TestRecord, str] | FabGuardError


def _checked(inst: Instance, records: Sequence[JsonObject]) -> list[Checked]:
    checked: list[Checked] = []
    for data in records:
        try:
            checked.append(_check(inst, data))
        except FabGuardError as exc:
            checked.append(exc)
    return checked


def _store(
    inst: Instance,
    fixture: FixtureFacts,
    records: Sequence[JsonObject],
    keyed: Answering | None = None,
    checked: list[Checked] | None = None,
) -> Outcome | Answer:
    """Check each record, then store the good ones and log the refusals of the bad ones in one transaction.

    Their events keep the upload's order. One transaction for a batch: a fast line's upload of 200
    records is a few statements, and a failure before the commit (the database gone) stores none of
    them, so resending the batch after an error answer stores each record once. An answer lost after
    the commit is another matter (records are append-only): with an idempotency key (``keyed``) the
    answer is kept in the same transaction, and a resend gets it back (an ``Answer``) storing nothing.
    ``checked`` is what ``records`` gave when they were checked before (a file's records, parsed from
    their format: ``records`` then holds each one's OpenHTF shape, or ``{}`` for the file's refusal).
    """
    uploaded = checked is None
    checked = _checked(inst, records) if checked is None else checked
    now = inst.clock()
    good = [(d, c) for d, c in zip(records, checked, strict=True) if not isinstance(c, FabGuardError)]
    rows = [_row(fixture, record, raw, now) for _, (record, raw) in good]
    digests = [_digest(data, record, raw, uploaded) for data, (record, raw) in good]
    with inst.db.transaction() as s:
        if keyed is not None and (stored_answer := take(s, inst, keyed[0], now)) is not None:
            return stored_answer
        ids = iter(_insert(s, rows, digests))
        out: list[StoredRecord | FabGuardError] = []
        events: list[NewEvent] = []
        for data, c in zip(records, checked, strict=True):
            if isinstance(c, FabGuardError):
                out.append(c)
                events.append(_refusal(fixture, data, c, now))
                continue
            record, _ = c
            stored = StoredRecord(next(ids), record.serial.value, record.outcome.value)
            out.append(stored)
            detail = {
                "record_id": stored.id,
                "outcome": stored.outcome,
                "station_id": fixture.id,
                "declared_station_id": record.declared_station_id,
                "site_id": fixture.site_id,
            }
            events.append(
                NewEvent(
                    "test.recorded",
                    now,
                    actor=f"fixture:{fixture.id}",
                    fixture_id=fixture.id,
                    serial=stored.serial,
                    detail=detail,
                )
            )
        append_events(s, events)
        if keyed is not None:
            return keep(s, keyed[0], *keyed[1](out))
    return out


def record_test(inst: Instance, fixture: FixtureFacts, data: JsonObject) -> StoredRecord:
    """Check and store one OpenHTF-shaped record uploaded by ``fixture``; a bad record is refused and logged."""
    outcome = _store(inst, fixture, [data])
    assert not isinstance(outcome, Answer)
    (result,) = outcome
    if isinstance(result, FabGuardError):
        raise result
    return result


def record_test_once(inst: Instance, fixture: FixtureFacts, data: JsonObject, key: Keyed) -> Answer:
    """:func:`record_test` under an idempotency key: the answer (201, or the refusal) is kept with the record."""
    answer = _store(inst, fixture, [data], (key, _single_answer))
    assert isinstance(answer, Answer)
    return answer


def _single_answer(outcome: Outcome) -> tuple[int, dict[str, object]]:
    (result,) = outcome
    return (result.status, result.to_dict()) if isinstance(result, FabGuardError) else (201, result.to_dict())


def _check_batch(inst: Instance, records: Sequence[JsonObject]) -> None:
    if len(records) > inst.limits.max_batch_records:
        raise InvalidRequest(
            f"a batch may hold at most {inst.limits.max_batch_records} records", code="batch_too_large"
        )


def _results(outcome: Outcome) -> list[dict[str, object]]:
    return [
        {"status": "refused", **r.to_dict()} if isinstance(r, FabGuardError) else {"status": "stored", **r.to_dict()}
        for r in outcome
    ]


def record_tests(inst: Instance, fixture: FixtureFacts, records: Sequence[JsonObject]) -> list[dict[str, object]]:
    """Batch upload: each record is checked on its own (a bad one is refused, the others stored), and
    the batch is stored in one transaction."""
    _check_batch(inst, records)
    outcome = _store(inst, fixture, records)
    assert not isinstance(outcome, Answer)
    return _results(outcome)


def record_tests_once(inst: Instance, fixture: FixtureFacts, records: Sequence[JsonObject], key: Keyed) -> Answer:
    """:func:`record_tests` under an idempotency key: the answer (200 and the results) is kept with the records."""
    _check_batch(inst, records)
    answer = _store(inst, fixture, records, (key, lambda outcome: (200, {"results": _results(outcome)})))
    assert isinstance(answer, Answer)
    return answer


def _parse_file(
    inst: Instance, fixture: FixtureFacts, data: bytes, format: str, assume_tz: tzinfo
) -> list[tuple[TestRecord, str]]:
    """Every UUT record of a station's file with its stored (OpenHTF-shaped) JSON, or the file's refusal.
    A file that names no station (JUnit XML without a host name) is the uploading fixture's."""
    limits = FormatLimits(
        max_bytes=inst.limits.max_body_bytes,
        max_phases=inst.limits.max_phases,
        max_measurements=inst.limits.max_measurements,
    )
    parsed = parse_test_records(data, format, limits=limits, assume_tz=assume_tz, station=fixture.id)
    out: list[tuple[TestRecord, str]] = []
    for record in parsed:
        raw = stored_text(openhtf_json(record))
        if len(raw) > inst.limits.max_test_record_bytes:
            raise RecordTooLarge(
                f"the record of {record.serial.value} is over {inst.limits.max_test_record_bytes} bytes when stored"
            )
        out.append((record, raw))
    return out


def _store_file(
    inst: Instance,
    fixture: FixtureFacts,
    data: bytes,
    format: str,
    assume_tz: tzinfo,
    keyed: Answering | None = None,
) -> Outcome | Answer:
    """A file's records all stored, or (malformed) none and the file's refusal logged: one transaction."""
    try:
        parsed = _parse_file(inst, fixture, data, format, assume_tz)
    except FabGuardError as exc:
        return _store(inst, fixture, [{}], keyed, [exc])
    return _store(inst, fixture, [openhtf_json(r) for r, _ in parsed], keyed, list(parsed))


def _file_answer(outcome: Outcome) -> tuple[int, dict[str, object]]:
    refused = next((r for r in outcome if isinstance(r, FabGuardError)), None)
    if refused is not None:
        return refused.status, refused.to_dict()
    return 201, {"records": [r.to_dict() for r in outcome if isinstance(r, StoredRecord)]}


def record_test_file(
    inst: Instance, fixture: FixtureFacts, data: bytes, format: str, assume_tz: tzinfo
) -> dict[str, object]:
    """Parse a station's own report (``format``: one of ``domain.testformats.FORMATS`` or ``auto``;
    ``assume_tz``: the station's zone, for times written without one) and store each of its UUT
    records; a malformed file is refused whole, logged, and stores nothing."""
    outcome = _store_file(inst, fixture, data, format, assume_tz)
    assert not isinstance(outcome, Answer)
    status, body = _file_answer(outcome)
    for result in outcome:
        if isinstance(result, FabGuardError):
            raise result
    assert status == 201
    return body


def record_test_file_once(
    inst: Instance, fixture: FixtureFacts, data: bytes, format: str, assume_tz: tzinfo, key: Keyed
) -> Answer:
    """:func:`record_test_file` under an idempotency key: the answer is kept with the records."""
    answer = _store_file(inst, fixture, data, format, assume_tz, (key, _file_answer))
    assert isinstance(answer, Answer)
    return answer


def records_for_serial(inst: Instance, serial: str) -> list[dict[str, object]]:
    """Every record of ``serial``, from every site, oldest first: ``station_id`` is the fixture that
    uploaded it, ``site_id`` the site whose orders it decides, ``declared_station_id`` what it claimed."""
    with inst.db.read() as s:
        rows = s.execute(
            select(TestRecordRow).where(TestRecordRow.serial == serial).order_by(TestRecordRow.id)
        ).scalars()
        return [
            {
                "id": r.id,
                "serial": r.serial,
                "fixture_id": r.fixture_id,
                "station_id": r.fixture_id,
                "site_id": r.site_id,
                "declared_station_id": r.declared_station_id,
                "outcome": r.outcome,
                "start_time_millis": r.start_ms,
                "end_time_millis": r.end_ms,
                "measurements": r.measurement_count,
                "received_at": r.received_at.isoformat(),
            }
            for r in rows
        ]
