"""Releasing firmware to one unit: decide, wrap the data key to the unit, record, then return the package.

The decision, the wrap and the ``firmware.released`` event share one transaction and commit before any
byte is returned; a refusal rolls back and is recorded alone as ``firmware.refused``. The server never
decrypts an image to release it: every unit receives the release's at-rest ciphertext, and only the
data key is wrapped anew, to the public key of the unit's own certificate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import OrderState
from fabguard.firmware import envelope
from fabguard.firmware.policy import (
    FirmwareRefusal,
    ReleaseState,
    UnitReleaseFacts,
    authorize_unit_release,
    order_found,
    release_found,
)
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.service.firmware import sealing_keys
from fabguard.store.eventlog import append_event
from fabguard.store.firmware_models import FirmwareAttachment, FirmwareRelease
from fabguard.store.models import Order, Unit


@dataclass(frozen=True)
class UnitPackage:
    """What a fixture receives for one unit: nothing in it is readable without that unit's key."""

    release_id: str
    version: str
    serial: str
    package: bytes


@dataclass(frozen=True, slots=True)
class UnitFirmwareRequest:
    """A fixture's request for one unit's package, parsed at the edge: short printable strings, looked up
    as they are (an id that names nothing is refused, and recorded, by the decision)."""

    release_id: str
    order_id: str
    serial: str


def release_to_unit(inst: Instance, fixture: FixtureFacts, request: UnitFirmwareRequest) -> UnitPackage:
    """Decide, record and build one unit's package; refusals are recorded and raised with their code."""
    rid, oid, sn = request.release_id, request.order_id, request.serial
    try:
        return _release_in(inst, fixture, rid, oid, sn)
    except FirmwareRefusal as refusal:
        record_refusal(
            inst,
            "firmware.refused",
            refusal,
            fixture_id=fixture.id,
            order_id=oid,
            serial=sn,
            detail={"release_id": rid, "site_id": fixture.site_id},
        )
        raise


def _release_in(inst: Instance, fixture: FixtureFacts, rid: str, oid: str, sn: str) -> UnitPackage:
    now = inst.clock()
    with inst.db.transaction() as s:
        row = release_found(rid, s.get(FirmwareRelease, rid))
        order = order_found(oid, s.get(Order, oid))
        unit = s.execute(
            select(Unit).where(Unit.product_id == order.product_id, Unit.serial == sn)
        ).scalar_one_or_none()
        on_order = unit is not None and unit.order_id == order.id
        cert = x509.load_pem_x509_certificate(unit.certificate_pem.encode()) if unit is not None and on_order else None
        unit_key = cert.public_key() if cert is not None else None
        authorize_unit_release(
            UnitReleaseFacts(
                release_id=row.id,
                release_state=ReleaseState(row.state),
                release_product_id=row.product_id,
                attached=s.get(FirmwareAttachment, (row.id, order.id)) is not None,
                fixture_site_id=fixture.site_id,
                order_id=order.id,
                order_site_id=order.site_id,
                order_product_id=order.product_id,
                order_active=order.state == OrderState.ACTIVE,
                serial=sn,
                unit_on_order=on_order,
                unit_revoked=on_order and unit is not None and unit.revoked_at is not None,
                unit_key_p256=isinstance(unit_key, ec.EllipticCurvePublicKey)
                and isinstance(unit_key.curve, ec.SECP256R1),
            )
        )
        assert unit is not None and isinstance(unit_key, ec.EllipticCurvePublicKey)
        manifest = row.manifest.encode()
        manifest_sha256 = hashlib.sha256(manifest).digest()
        data_key = envelope.unwrap_data_key(sealing_keys.kek(inst), row.key_nonce, row.wrapped_key, row.id)
        wrap = envelope.wrap_to_unit(data_key, unit_key, serial=sn, release_id=row.id, manifest_sha256=manifest_sha256)
        append_event(
            s,
            "firmware.released",
            at=now,
            actor=f"fixture:{fixture.id}",
            order_id=order.id,
            fixture_id=fixture.id,
            serial=sn,
            detail={
                "release_id": row.id,
                "product_id": row.product_id,
                "version": row.version,
                "site_id": fixture.site_id,
                "cert_serial": unit.cert_serial,
                "manifest_sha256": manifest_sha256.hex(),
                "ephemeral_key_sha256": hashlib.sha256(wrap.ephemeral_public_key).hexdigest(),
            },
        )
        signature, version = row.manifest_signature, row.version
    # The ciphertext is immutable once uploaded: read it after the decision commits, outside the write lock.
    with inst.db.read() as s:
        ciphertext = s.execute(select(FirmwareRelease.ciphertext).where(FirmwareRelease.id == rid)).scalar_one()
    return UnitPackage(rid, version, sn, envelope.encode_package(manifest, signature, wrap, ciphertext))


__all__ = ["UnitFirmwareRequest", "UnitPackage", "release_to_unit"]
