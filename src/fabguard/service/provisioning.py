"""Provisioning a unit: the one transaction that matters (ARCHITECTURE.md).

Authorize (pure policies over facts read in the transaction), reserve quota atomically, sign,
record the unit and its event, commit; only then is the certificate returned. A refusal rolls
everything back and is recorded on its own, consuming nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from fabguard.domain.errors import FabGuardError, InvalidRequest, Refusal
from fabguard.domain.issuance import (
    AttestationPolicy,
    FixtureFacts,
    IssuanceRequest,
    authorize_issuance,
    fixture_active,
    fixture_at_order_site,
)
from fabguard.domain.values import (
    OrderId,
    Serial,
    parse_key_types,
    recorded_order_id,
    recorded_serial,
)
from fabguard.pki import attestation, matter, profiles
from fabguard.pki.csr import CheckedCsr
from fabguard.service import idempotency
from fabguard.service.attestation import check_request, recorded
from fabguard.service.authorities import USABLE
from fabguard.service.events import record_refusal, refusal_event
from fabguard.service.idempotency import Answer, Keyed
from fabguard.service.instance import Instance
from fabguard.store.db import append_event, reserve_quota
from fabguard.store.issuance_facts import lock_order, unit_history
from fabguard.store.models import Unit

# A concurrent request for the same serial or key can make our insert collide; the retry then sees
# the other request's unit and answers as for any retry (same certificate, or a refusal).
_COLLISION_RETRIES = 3


@dataclass(frozen=True)
class Provisioned:
    serial: str
    order_id: str
    certificate_pem: str
    chain_pem: list[str]
    replayed: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "order_id": self.order_id,
            "certificate": self.certificate_pem,
            "chain": self.chain_pem,
            "replayed": self.replayed,
        }


@dataclass(frozen=True, slots=True)
class UnitRequest:
    """One unit's provisioning request, parsed at the edge: the order, the serial, the checked CSR, and the
    key attestation if it carried one (a refusal when it could not be read: the product's policy decides)."""

    order_id: OrderId
    serial: Serial
    csr: CheckedCsr
    attestation: attestation.Evidence | Refusal | None = None


@dataclass(frozen=True, slots=True)
class UnparsedUnit:
    """A unit request the edge could not parse: why, and its order id and serial where they were strings."""

    error: FabGuardError
    order_id: str | None
    serial: str | None


def provision_unit(inst: Instance, fixture: FixtureFacts, request: UnitRequest | UnparsedUnit) -> Provisioned:
    """Decide, and if allowed issue, the device certificate for one unit.

    An unparsed request is refused here like any other: a refusal is recorded, and nothing is consumed.
    """
    if isinstance(request, UnparsedUnit):
        if isinstance(request.error, Refusal):
            record_unit_refusal(inst, fixture, request.error, order_id=request.order_id, serial=request.serial)
        raise request.error
    try:
        done = _provision_retrying(inst, fixture, request, None)
    except Refusal as refusal:
        record_unit_refusal(inst, fixture, refusal, order_id=request.order_id.value, serial=request.serial.value)
        raise
    assert isinstance(done, Provisioned)
    return done


def provision_unit_once(
    inst: Instance, fixture: FixtureFacts, request: UnitRequest | UnparsedUnit, key: Keyed
) -> Answer:
    """:func:`provision_unit` under an idempotency key. The answer, a refusal too (as the draft says: the
    response, whatever it is), is kept in the transaction that issued the certificate or recorded the
    refusal; a resend gets it back, and a refusal is recorded once, however often it is resent."""
    if isinstance(request, UnparsedUnit):
        if isinstance(request.error, Refusal):
            return _refuse_once(inst, fixture, key, request.error, request.order_id, request.serial)
        raise request.error
    try:
        done = _provision_retrying(inst, fixture, request, key)
    except Refusal as refusal:
        return _refuse_once(inst, fixture, key, refusal, request.order_id.value, request.serial.value)
    assert isinstance(done, Answer)
    return done


def _provision_retrying(
    inst: Instance, fixture: FixtureFacts, request: UnitRequest, key: Keyed | None
) -> Provisioned | Answer:
    for attempt in range(_COLLISION_RETRIES):
        try:
            return _provision_in_transaction(inst, fixture, request, key)
        except IntegrityError:
            if attempt == _COLLISION_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _refuse_once(
    inst: Instance, fixture: FixtureFacts, key: Keyed, refusal: Refusal, order_id: str | None, serial: str | None
) -> Answer:
    event = refusal_event(
        "unit.refused",
        refusal,
        at=inst.clock(),
        fixture_id=fixture.id,
        order_id=recorded_order_id(order_id),
        serial=recorded_serial(serial),
        detail={"site_id": fixture.site_id},
    )
    return idempotency.refuse_once(inst, key, event, refusal)


def record_unit_refusal(
    inst: Instance, fixture: FixtureFacts, refusal: Refusal, *, order_id: str | None, serial: str | None
) -> None:
    """Record a refused provisioning attempt (nothing else changed)."""
    record_refusal(
        inst,
        "unit.refused",
        refusal,
        fixture_id=fixture.id,
        order_id=recorded_order_id(order_id),
        serial=recorded_serial(serial),
        detail={"site_id": fixture.site_id},
    )


def _provision_in_transaction(
    inst: Instance, fixture: FixtureFacts, unit: UnitRequest, key: Keyed | None
) -> Provisioned | Answer:
    serial, checked = unit.serial, unit.csr
    now = inst.clock()
    with inst.db.transaction() as s:
        # The key first: a rival with the same key waits here for this transaction, then replays its answer.
        if key is not None and (stored := idempotency.take(s, inst, key, now)) is not None:
            return stored
        # Lock the order row first: requests for one order decide one after another, so a request that
        # waited sees the unit its rival committed (same certificate, or key_reused) rather than only
        # the spent quota. SQLite's immediate transactions already serialise; PostgreSQL needs this.
        # The history is a statement of its own, after the lock: on PostgreSQL a statement that waited
        # for a row lock still reads other tables as of its start.
        order = lock_order(s, unit.order_id.value)
        if order is None:
            raise Refusal("order_not_found", f"no order {unit.order_id.value!r}")
        facts, ca_name, product_id = order.facts, order.issuing_ca, order.facts.product_id
        history, existing, ca_state = unit_history(s, product_id, serial.value, checked.facts.key_fingerprint, ca_name)
        policy = AttestationPolicy(order.attestation_policy)
        attestation_facts, attested = check_request(s, policy, product_id, unit.attestation, checked.csr, now)
        request = IssuanceRequest(
            fixture=fixture,
            order=facts,
            allowed_key_types=parse_key_types(order.key_types.split(",")),
            serial=serial,
            csr=checked.facts,
            history=history,
            now=now,
            attestation=attestation_facts,
        )
        if existing is not None and existing.revoked_at is not None:
            fixture_active(request)
            fixture_at_order_site(request)
            raise Refusal("unit_revoked", f"unit {serial} was revoked ({existing.revocation_reason}); it stays revoked")
        if existing is not None and existing.key_fingerprint == checked.facts.key_fingerprint:
            # An idempotent retry: the same unit with the same key gets the same certificate, for free.
            fixture_active(request)
            fixture_at_order_site(request)
            if existing.order_id != facts.id:
                raise Refusal("serial_has_other_key", f"serial {serial} was provisioned on order {existing.order_id}")
            again = Provisioned(serial.value, facts.id, existing.certificate_pem, inst.cas.chain_pem(ca_name, s), True)
            return again if key is None else idempotency.keep(s, key, 200, again.to_dict())
        authorize_issuance(request)
        if ca_state is None or ca_state not in USABLE:
            raise Refusal("issuing_ca_revoked", f"order {facts.id}'s issuing CA {ca_name} is {ca_state or 'missing'}")
        issuer = inst.cas.issuer(ca_name, s)
        if not reserve_quota(s, facts.id):
            raise Refusal("quota_exhausted", f"order {facts.id} has used all {facts.quota} units")
        lifetime = timedelta(days=order.cert_lifetime_days) if order.cert_lifetime_days else None
        cert = device_certificate(inst, issuer, checked.public_key, serial, product_id, now, lifetime, ca_name)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        cert_serial = format(cert.serial_number, "x")
        cert_sha256 = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        s.execute(
            insert(Unit).values(
                product_id=product_id,
                serial=serial.value,
                order_id=facts.id,
                fixture_id=fixture.id,
                key_fingerprint=checked.facts.key_fingerprint,
                cert_serial=cert_serial,
                cert_sha256=cert_sha256,
                issuing_ca=ca_name,
                certificate_pem=pem,
                issued_at=now,
                attestation=recorded(attested),
            )
        )
        append_event(
            s,
            "unit.provisioned",
            at=now,
            actor=f"fixture:{fixture.id}",
            order_id=facts.id,
            fixture_id=fixture.id,
            serial=serial.value,
            detail={
                "cert_serial": cert_serial,
                "cert_sha256": cert_sha256,
                "key_fingerprint": checked.facts.key_fingerprint,
                "site_id": fixture.site_id,
                "product_id": product_id,
                **({"attestation": attested.to_dict()} if attested is not None else {}),
            },
        )
        done = Provisioned(serial.value, facts.id, pem, inst.cas.chain_pem(ca_name, s), False)
        if key is not None:
            return idempotency.keep(s, key, 201, done.to_dict())
    return done


def device_certificate(
    inst: Instance,
    issuer: profiles.Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    serial: Serial,
    product_id: str,
    now: datetime,
    lifetime: timedelta | None,
    ca_name: str,
) -> x509.Certificate:
    """The product's device profile: a Matter DAC under a Matter PAI, else an IEEE 802.1AR IDevID."""
    vid, pid = matter.subject_ids(issuer.certificate.subject)
    if vid is None:
        return profiles.idevid_certificate(
            issuer,
            public_key,
            serial,
            inst.config.organization,
            product_id,
            now,
            lifetime,
            crl_url=inst.cas.crl_url(ca_name),
        )
    if pid is None:
        raise Refusal("key_type_not_allowed", f"the Matter PAI {ca_name} names no product ID for the DAC")
    try:
        return matter.dac_certificate(issuer, public_key, serial.value, vid, pid, now)
    except matter.AttestationProfileError as exc:
        raise Refusal("key_type_not_allowed", f"a Matter DAC cannot be issued: {exc.message}") from None


def provision_batch(
    inst: Instance, fixture: FixtureFacts, units: Sequence[UnitRequest | UnparsedUnit]
) -> list[dict[str, object]]:
    """Many units in one request, each decided on its own (one transaction each), answered in order."""
    _check_batch(inst, units)
    results: list[dict[str, object]] = []
    for unit in units:
        try:
            done = provision_unit(inst, fixture, unit)
            results.append({"status": "issued", **done.to_dict()})
        except FabGuardError as exc:
            results.append({"status": "refused", "serial": _serial_of(unit), **exc.to_dict()})
    return results


def provision_batch_once(
    inst: Instance, fixture: FixtureFacts, units: Sequence[tuple[UnitRequest | UnparsedUnit, object]], key: Keyed
) -> Answer:
    """:func:`provision_batch` under an idempotency key; ``units`` pairs each request with its JSON (for
    its part's fingerprint). Each unit's answer is kept in its own transaction, the batch's at the end."""
    _check_batch(inst, [u for u, _ in units])
    stored = idempotency.begin_batch(inst, key)
    if stored is not None:
        return stored
    results: list[dict[str, object]] = []
    try:
        for index, (unit, body) in enumerate(units):
            try:
                answer = provision_unit_once(inst, fixture, unit, key.unit(index, body))
            except FabGuardError as exc:
                answer = Answer(exc.status, exc.to_dict())
            if answer.status < 400:
                results.append({"status": "issued", **answer.body})
            else:
                results.append({"status": "refused", "serial": _serial_of(unit), **answer.body})
    except BaseException:
        idempotency.abandon_batch(inst, key)
        raise
    return idempotency.finish_batch(inst, key, {"results": results})


def _check_batch(inst: Instance, units: Sequence[UnitRequest | UnparsedUnit]) -> None:
    if not units:
        raise InvalidRequest("units must be a non-empty list of {serial, csr}")
    if len(units) > inst.limits.max_batch_units:
        raise InvalidRequest(f"a batch may hold at most {inst.limits.max_batch_units} units", code="batch_too_large")


def _serial_of(unit: UnitRequest | UnparsedUnit) -> str | None:
    return unit.serial if isinstance(unit, UnparsedUnit) else unit.serial.value
