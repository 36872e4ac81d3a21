"""The fixture station's calls (TLS client certificate): whoami, test records, provisioning.

``POST /api/v1/test-records`` takes an OpenHTF JSON record, or a station's own report as it is (ATML,
TestStand XML, JUnit XML as ``application/xml`` or ``text/xml``; CSV as ``text/csv``), parsed on the
server by ``domain.testformats``, so a ``curl`` from any line PC feeds the test gate.

The four writing calls take an optional ``Idempotency-Key`` header (``service.idempotency``): with it, a
resend of the same request gets the first answer back (``Idempotent-Replayed: true``) and stores nothing."""

from __future__ import annotations

import hashlib
from datetime import UTC, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fabguard.api import parsing
from fabguard.api.deps import Fixture, Inst, Provisioner, decided
from fabguard.api.documents import OpenHtfRecord, Published
from fabguard.api.responses.station import (
    AllocatedIdentity,
    ProvisionedUnit,
    RecordResults,
    StoredRecord,
    StoredRecords,
    UnitResults,
)
from fabguard.api.schemas import AllocateIn, ProvisionBatchIn, ProvisionIn, TestRecordsIn
from fabguard.domain.errors import InvalidRequest
from fabguard.domain.idempotency import IdempotencyKey
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.testformats import FormatUnknown
from fabguard.domain.values import Serial
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import allocation, issuance, testrecords

router = APIRouter(tags=["fixture"])

REPLAYED_HEADER = "Idempotent-Replayed"

KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "A key the fixture chose for this one request (a UUID, say; 1 to 255 printable ASCII characters, "
            "bare or as a quoted structured-field string). The answer is stored with the work, in the same "
            "transaction, for `idempotency_key_hours` (24 h): a resend with the same key and the same body "
            "gets that answer again, with `Idempotent-Replayed: true`, and stores nothing (a refusal is "
            "replayed too, and recorded once). The same key with another body is refused with "
            "`idempotency_key_reused` (422); a key whose batch is still at work with "
            "`idempotency_key_in_progress` (409); a malformed key with `idempotency_key_invalid` (400). "
            "Without the header a resend is a new request."
        ),
    ),
]


def _keyed(f: Fixture, header: str, operation: str, body: object) -> Keyed:
    return Keyed.of(f.id, IdempotencyKey.parse(header), operation, body)


def _answered(answer: Answer) -> JSONResponse:
    headers = {REPLAYED_HEADER: "true"} if answer.replayed else {}
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _dumped(body: BaseModel) -> Any:
    """The body as its idempotency fingerprint sees it: an absent attestation is left out, so a request
    without one has the fingerprint it had before attestation existed."""
    dumped = body.model_dump(mode="json")
    if dumped.get("attestation", 0) is None:
        del dumped["attestation"]
    if isinstance(dumped.get("units"), list):
        for unit in dumped["units"]:
            if isinstance(unit, dict) and unit.get("attestation", 0) is None:
                del unit["attestation"]
    return dumped


@router.get("/api/v1/fixture/whoami")
def fixture_whoami(f: Fixture) -> dict[str, str]:
    return {"fixture_id": f.id, "site_id": f.site_id}


# A station's own report, as it is: the media types taken besides JSON.
FILE_MEDIA_TYPES = ("application/xml", "text/xml", "text/csv")
FileFormat = Literal["auto", "openhtf", "atml", "teststand-xml", "junit", "csv"]
# The JSON body's schema is the parameter's (an OpenHTF record, api/documents.py); the files are text.
_RECORD_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {m: {"schema": {"type": "string"}} for m in FILE_MEDIA_TYPES}}
}
FormatQuery = Annotated[
    FileFormat,
    Query(
        description="The file's format (XML and CSV bodies): `auto` reads it from the file; a file in "
        "another format than the one named is refused with `test_record_format_unknown`."
    ),
]
ZoneQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="The station's time zone (an IANA name: `Europe/Berlin`) for times the file writes "
        "without an offset (TestStand writes local time); UTC when absent.",
    ),
]


def _zone(name: str | None) -> tzinfo:
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise InvalidRequest(
            f"time zone {name[:64]!r} is not an IANA name such as Europe/Berlin", code="time_zone_invalid"
        ) from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _upload_file(
    inst: Inst, f: Fixture, data: bytes, media_type: str, format: str, tz: str | None, key: str | None
) -> dict[str, object] | JSONResponse:
    if media_type not in FILE_MEDIA_TYPES:
        raise InvalidRequest(
            f"a test record is JSON, XML ({', '.join(FILE_MEDIA_TYPES[:2])}) or CSV (text/csv), not {media_type[:80]!r}",
            code="unsupported_media_type",
            status=415,
        )
    zone = _zone(tz)
    if key is None:
        return testrecords.record_test_file(inst, f, data, format, zone)
    fingerprint = {"media_type": media_type, "format": format, "tz": tz, "sha256": hashlib.sha256(data).hexdigest()}
    keyed = _keyed(f, key, "POST /api/v1/test-records (file)", fingerprint)
    return _answered(testrecords.record_test_file_once(inst, f, data, format, zone, keyed))


@router.post(
    "/api/v1/test-records",
    status_code=201,
    response_model=StoredRecord | StoredRecords,
    openapi_extra=_RECORD_BODY,
)
def upload_test_record(
    inst: Inst,
    record: Annotated[Any, Body(), Published(OpenHtfRecord)],
    f: Fixture,
    request: Request,
    format: FormatQuery = "auto",
    tz: ZoneQuery = None,
    idempotency_key: KeyHeader = None,
) -> dict[str, object] | JSONResponse:
    """One OpenHTF JSON test record (as written by OpenHTF's OutputToJSON), or a station's own report.

    A report (ATML, TestStand XML, JUnit XML as `application/xml` or `text/xml`, CSV as `text/csv`) is
    parsed on the server into the same model (docs/test-record-formats.md) and each of its UUT records
    stored: the answer (201) is `{"records": [{id, serial, outcome}, ...]}`. A malformed file is refused
    whole (`test_record_format_invalid`, naming the line or element at fault) and stores nothing.

    The record's station is the fixture that uploads it, and it decides only the units of orders at that
    fixture's site (a record from another site is kept and listed, but opens or blocks nothing here); the
    body's ``station_id`` is kept as ``declared_station_id``, a claim trusted for nothing."""
    if isinstance(record, bytes):
        return _upload_file(inst, f, record, _media_type(request), format, tz, idempotency_key)
    if not isinstance(record, dict):
        raise InvalidRequest("body: a JSON test record is an object (OpenHTF's OutputToJSON)")
    if format not in ("auto", "openhtf"):
        raise FormatUnknown(f"a JSON body is an OpenHTF record, not {format}")
    if idempotency_key is None:
        return testrecords.record_test(inst, f, record).to_dict()
    key = _keyed(f, idempotency_key, "POST /api/v1/test-records", record)
    return _answered(testrecords.record_test_once(inst, f, record, key))


@router.post("/api/v1/test-records/batch", response_model=RecordResults)
def upload_test_records(
    inst: Inst, body: TestRecordsIn, f: Fixture, idempotency_key: KeyHeader = None
) -> dict[str, Any] | JSONResponse:
    """Up to ``max_batch_records`` (200) records: each is checked on its own and answered in order
    (``stored`` with its id, or ``refused`` with the error); the stored ones and the refusals are
    written in one transaction, so a request that failed with an error status stored none of them.
    Each record is bound to this fixture and its site, as for a single upload."""
    if idempotency_key is None:
        return {"results": testrecords.record_tests(inst, f, body.records)}
    key = _keyed(f, idempotency_key, "POST /api/v1/test-records/batch", body.model_dump(mode="json"))
    return _answered(testrecords.record_tests_once(inst, f, body.records, key))


# The hot path answers its dict as it is (no response validation: issue 28's profile); its model documents it.
@router.post(
    "/api/v1/units/provision",
    response_model=None,
    status_code=201,
    responses={201: {"model": ProvisionedUnit}, 200: {"model": ProvisionedUnit}},
)
async def provision_unit(
    inst: Inst,
    body: ProvisionIn,
    f: Fixture,
    request: Request,
    response: Response,
    idempotency_key: KeyHeader = None,
) -> dict[str, object] | JSONResponse:
    """Check and, if allowed, issue one unit's device certificate (201; 200 for an idempotent retry)."""
    # Requests are served by api.hot_routes' lean route, placed first; this one documents the call in
    # /openapi.json and answers what the lean route hands on (any body that does not validate).
    answer = await unit_answer(request, inst, f, body, idempotency_key)
    if isinstance(answer, JSONResponse):
        return answer
    content, response.status_code = answer
    return content


async def unit_answer(
    request: Request, inst: Instance, f: FixtureFacts, body: ProvisionIn, idempotency_key: str | None
) -> tuple[dict[str, object], int] | JSONResponse:
    """One unit's answer, for ``provision_unit`` and the lean route (``api.hot_routes``): the unit's body and
    status (201, 200 for a retry), or the answer kept under the idempotency key."""
    # On the event loop: parsing is pure, and the unit is decided by the writer thread, awaited (deps.decided).
    unit = parsing.unit_request(
        body.order_id, body.serial, body.csr, body.attestation, max_csr_bytes=inst.limits.max_csr_bytes
    )
    if idempotency_key is not None:
        key = _keyed(f, idempotency_key, "POST /api/v1/units/provision", _dumped(body))
        [outcome] = await decided(request, [issuance.unit_job(f, unit, key)])
        return _answered(issuance.answered(outcome))
    [outcome] = await decided(request, [issuance.unit_job(f, unit)])
    done = issuance.provisioned(outcome)
    return done.to_dict(), 200 if done.replayed else 201


@router.post("/api/v1/units/provision-batch", response_model=UnitResults, response_model_exclude_unset=True)
def provision_batch(
    inst: Inst, body: ProvisionBatchIn, f: Fixture, runner: Provisioner, idempotency_key: KeyHeader = None
) -> dict[str, Any] | JSONResponse:
    """Many units in one request; each is decided on its own and has its own status."""
    units = [
        parsing.batch_unit_request(
            body.order_id, u.serial, u.csr, u.attestation, max_csr_bytes=inst.limits.max_csr_bytes
        )
        for u in body.units
    ]
    if idempotency_key is None:
        return {"results": issuance.provision_batch(inst, f, units, runner=runner)}
    key = _keyed(f, idempotency_key, "POST /api/v1/units/provision-batch", _dumped(body))
    pairs = [(unit, _dumped(u)) for unit, u in zip(units, body.units, strict=True)]
    return _answered(issuance.provision_batch_once(inst, f, pairs, key, runner=runner))


@router.post(
    "/api/v1/units/allocate",
    status_code=201,
    response_model=None,
    responses={201: {"model": AllocatedIdentity}, 200: {"model": AllocatedIdentity}},
)
def allocate_unit_identity(
    inst: Inst, body: AllocateIn, f: Fixture, response: Response, idempotency_key: KeyHeader = None
) -> dict[str, object] | JSONResponse:
    """Allocate one unit's identities from its product's pools before it is provisioned (docs/identities.md):
    the next serial (for a product with a serial format; else the station names the unit's serial), its MAC
    addresses and its Matter onboarding data (passcode, discriminator, salt, iterations, verifier, QR and
    manual codes). 201 for new identities; 200 when a station-chosen serial already holds them on this
    order. Refused, drawing nothing: `identity_pool_exhausted`, `quota_exhausted` (the order holds
    identities for all its units), `identity_pool_missing`, `serial_already_allocated`,
    `allocation_serial_invalid`, `matter_ids_mismatch` (the order's Matter PAI would sign a DAC for another
    vendor or product), and the order and fixture refusals of provisioning."""
    order_id = parsing.order_to_provision(body.order_id)
    serial = Serial.parse(body.serial) if body.serial is not None else None
    if idempotency_key is not None:
        key = _keyed(f, idempotency_key, "POST /api/v1/units/allocate", body.model_dump(mode="json"))
        answer = allocation.allocate_unit(inst, f, order_id, serial, key)
        assert isinstance(answer, Answer)
        return _answered(answer)
    done = allocation.allocate_unit(inst, f, order_id, serial)
    assert isinstance(done, allocation.Allocated)
    response.status_code = 200 if done.replayed else 201
    return done.to_dict()
