"""Turning request fields into the value objects the services take, once, at the edge.

A provisioning request that cannot be parsed is not an error of the API: it becomes an
``UnparsedUnit`` that the provisioning service refuses (and records) like any other refusal, with the
same code it would have had (``serial_invalid``, ``csr_invalid``, ``order_not_found``, ...). A firmware
fetch becomes a ``UnitFirmwareRequest``. Ids that name something to create (product, site, fixture, CA)
are parsed in the routes by their value classes (``ProductId(...)``), and an id that names something
to look up by ``ProductId.named(...)``: one no product can have is simply not found.

A time the API takes, in a query or a body, is a :data:`Timestamp`: RFC 3339 (``date-time``, with its
offset) and nothing else, so a number (Pydantic would read ``0.5`` as 1970), a date alone (which names
no instant until a time zone is chosen for it) or a time without an offset is ``invalid_time`` at the
edge. A day (``support_until``) is a :data:`Day`, RFC 3339's ``full-date``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from cryptography.x509.oid import NameOID
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from fabguard.domain.errors import FabGuardError, InvalidRequest, Refusal
from fabguard.domain.values import OrderId, Serial
from fabguard.pki import attestation
from fabguard.pki.csr import check_device_csr, load_csr
from fabguard.service.firmware.unit_releases import UnitFirmwareRequest
from fabguard.service.provisioning.unit_requests import UnitRequest, UnparsedUnit

# RFC 3339 section 5.6: full-date "T" full-time, the offset "Z" or +hh:mm / -hh:mm ("T" and "Z" in either case).
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_SHOWN = 40  # characters of a refused value repeated in the message


def _refused_time(value: object, what: str) -> PydanticCustomError:
    # The error's type is the declared code: api.errors answers a validation error with it.
    return PydanticCustomError("invalid_time", "{value} is not " + what, {"value": repr(value)[:_SHOWN]})


def rfc3339_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp with its offset (``2031-01-01T00:00:00Z``, ``...T08:00:00.5+08:00``); a
    leap second (``:60``) is refused, as Python's datetime cannot hold it."""
    what = "an RFC 3339 timestamp with its time zone, e.g. 2031-01-01T00:00:00Z"
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value.upper()):
        raise _refused_time(value, what)
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:  # a month 13, a 25th hour, an offset past 23:59, a leap second
        raise _refused_time(value, what) from None


def rfc3339_day(value: object) -> date:
    """An RFC 3339 ``full-date``, YYYY-MM-DD."""
    what = "an RFC 3339 date, YYYY-MM-DD"
    if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
        raise _refused_time(value, what)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _refused_time(value, what) from None


# The types of the API's times: /openapi.json shows a string of format date-time (date) as before.
Timestamp = Annotated[datetime, BeforeValidator(rfc3339_timestamp)]
Day = Annotated[date, BeforeValidator(rfc3339_day)]


def order_to_provision(value: object) -> OrderId:
    """The order a fixture names; an id no order can have is simply not found."""
    try:
        if isinstance(value, str):
            return OrderId(value)
    except InvalidRequest:
        pass
    raise Refusal("order_not_found", f"no order {str(value)[:63]!r}")


def unit_request(
    order_id: object, serial: object, csr: object, evidence: object = None, *, max_csr_bytes: int
) -> UnitRequest | UnparsedUnit:
    """A JSON provisioning request: the serial, then the CSR (PEM or base64 DER), then the order, then the
    key attestation if any (one that cannot be read is kept as its refusal: the product's policy decides)."""
    try:
        unit_serial = Serial.parse(serial)
        if not isinstance(csr, str):
            raise Refusal("csr_invalid", "the CSR must be a PEM or base64 DER string")
        checked = check_device_csr(load_csr(csr.encode("utf-8", "replace"), max_csr_bytes))
        return UnitRequest(order_to_provision(order_id), unit_serial, checked, _evidence(evidence))
    except Refusal as refusal:
        return _unparsed(refusal, order_id, serial)


def _evidence(value: object) -> attestation.Evidence | Refusal | None:
    if value is None:
        return None
    try:
        return attestation.parse_evidence(value)
    except Refusal as refusal:
        return refusal


def batch_unit_request(
    order_id: object, serial: object, csr: object, evidence: object = None, *, max_csr_bytes: int
) -> UnitRequest | UnparsedUnit:
    """One unit of a batch: as :func:`unit_request`, but a unit without string fields is an invalid request."""
    if not isinstance(serial, str) or not isinstance(csr, str):
        return _unparsed(InvalidRequest("each unit needs a serial and a csr, both strings"), order_id, serial)
    return unit_request(order_id, serial, csr, evidence, max_csr_bytes=max_csr_bytes)


def est_unit_request(order_id: str, body: bytes, *, max_csr_bytes: int) -> UnitRequest | UnparsedUnit:
    """An EST simpleenroll: the CSR, the serial its subject names, the CSR's checks, then the order."""
    try:
        csr = load_csr(body, max_csr_bytes)
        serials = csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    except Refusal as refusal:
        return _unparsed(refusal, order_id, None)
    except ValueError:
        return _unparsed(Refusal("csr_invalid", "the CSR subject cannot be parsed"), order_id, None)
    serial = serials[0].value if len(serials) == 1 else ""
    try:
        unit_serial = Serial.parse(serial)
        checked = check_device_csr(csr)
        return UnitRequest(order_to_provision(order_id), unit_serial, checked)
    except Refusal as refusal:
        return _unparsed(refusal, order_id, serial)


def _unparsed(error: FabGuardError, order_id: object, serial: object) -> UnparsedUnit:
    return UnparsedUnit(
        error,
        order_id if isinstance(order_id, str) else None,
        serial if isinstance(serial, str) else None,
    )


def unit_firmware_request(release_id: str, order_id: str, serial: str) -> UnitFirmwareRequest:
    """A firmware fetch: release id, order id and serial must be short printable strings (the body schema
    bounds their lengths); anything else is an invalid request, not a refusal."""
    for value, limit in ((release_id, 64), (order_id, 63), (serial, 64)):
        if not 0 < len(value) <= limit or not value.isprintable():
            raise InvalidRequest("release_id, order_id and serial must be short printable strings")
    return UnitFirmwareRequest(release_id, order_id, serial)
