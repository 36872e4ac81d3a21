"""Turning request fields into the value objects the services take, once, at the edge.

A provisioning request that cannot be parsed is not an error of the API: it becomes an
``UnparsedUnit`` that the provisioning service refuses (and records) like any other refusal, with the
same code it would have had (``serial_invalid``, ``csr_invalid``, ``order_not_found``, ...). A firmware
fetch becomes a ``UnitFirmwareRequest``. Ids that name something to create (product, site, fixture, CA)
are parsed in the routes by their value classes (``ProductId(...)``), and an id that names something
to look up by ``ProductId.named(...)``: one no product can have is simply not found.
"""

from __future__ import annotations

from cryptography.x509.oid import NameOID

from fabguard.domain.errors import FabGuardError, InvalidRequest, Refusal
from fabguard.domain.values import OrderId, Serial
from fabguard.pki import attestation
from fabguard.pki.csr import check_device_csr, load_csr
from fabguard.service.firmware_units import UnitFirmwareRequest
from fabguard.service.unit_requests import UnitRequest, UnparsedUnit


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
