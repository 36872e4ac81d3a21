"""Re-enrolment (EST simplereenroll): a provisioned unit, authenticated by its current certificate, renews it.

Consumes no quota. The unit may keep its key or move to a new one (never one seen elsewhere). The new
certificate has the product's device profile, as at first issuance: a Matter DAC under the order's PAI,
else an IEEE 802.1AR IDevID. The DAC is signed by the unit's own PAI (the one that signed its first DAC,
retired or not), never its order's current CA, and names the vendor and product ID of the unit's onboarding
payload, or is refused (``matter_ids_mismatch``: data from before that rule may disagree).

The certificate it replaces is revoked with reason ``superseded`` (RFC 5280 CRLReason 4) at the
re-enrolment, in the same transaction: OCSP answers ``revoked`` for it, and the issuing CA's CRL is
re-signed at once to list it, as after a revocation.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from fabguard.domain.errors import Refusal, Unauthorized
from fabguard.domain.reenrolment import ReenrolmentRequest, authorize_reenrolment
from fabguard.domain.values import Serial, parse_key_types
from fabguard.pki.csr import CheckedCsr, check_device_csr, load_csr
from fabguard.service.authority.authorities import USABLE, matter_pai_facts
from fabguard.service.authority.revocation import ca_names, refresh_crl
from fabguard.service.core.ca_registry import EXTERNAL_KEY
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.unit_requests import Provisioned, device_certificate
from fabguard.store.eventlog import append_event
from fabguard.store.identities import allocations
from fabguard.store.identity_models import UnitIdentityRow
from fabguard.store.models import CertificateAuthority, Product, SupersededCertificate, Unit


def reenroll_unit(inst: Instance, unit_cert_der: bytes | None, csr: bytes) -> Provisioned:
    """Renew the certificate of the unit whose current certificate is ``unit_cert_der`` (the TLS client certificate)."""
    if not unit_cert_der:
        raise Unauthorized("re-enrolment needs the unit's current certificate as the TLS client certificate")
    fingerprint = hashlib.sha256(unit_cert_der).hexdigest()
    try:
        checked = check_device_csr(load_csr(csr, inst.limits.max_csr_bytes))
        provisioned, ca = _reenroll_in(inst, fingerprint, checked)
    except Refusal as refusal:
        record_refusal(inst, "reenroll.refused", refusal, detail={"cert_sha256": fingerprint})
        raise
    if ca in ca_names(inst):  # not a site agent's CA, whose key is the agent's
        refresh_crl(inst, ca)  # the superseded certificate is on the next CRL at once
    return provisioned


def _reenroll_in(inst: Instance, fingerprint: str, checked: CheckedCsr) -> tuple[Provisioned, str]:
    """Issue the new certificate and supersede the old one; (what to answer, the issuing CA's name)."""
    now = inst.clock()
    with inst.db.transaction() as s:
        unit = s.execute(select(Unit).where(Unit.cert_sha256 == fingerprint).with_for_update()).scalar_one_or_none()
        if unit is None:
            raise Unauthorized(
                "the client certificate is not the current certificate of a provisioned unit", code="unknown_device"
            )
        product = s.get(Product, unit.product_id)
        assert product is not None
        new_key = checked.facts.key_fingerprint
        owner = None
        if new_key != unit.key_fingerprint:
            owner = s.execute(select(Unit.serial).where(Unit.key_fingerprint == new_key)).scalar_one_or_none()
        ca = s.get(CertificateAuthority, unit.issuing_ca)
        given = allocations(s, [(unit.product_id, unit.serial)]).get((unit.product_id, unit.serial))
        authorize_reenrolment(
            ReenrolmentRequest(
                serial=unit.serial,
                revoked=unit.revoked_at is not None,
                csr=checked.facts,
                allowed_key_types=parse_key_types(product.key_types.split(",")),
                new_key_owner_serial=owner,
                issuing_ca=unit.issuing_ca,
                issuing_ca_usable=ca is not None and ca.state in USABLE,
                new_key_unattested=new_key != unit.key_fingerprint and product.attestation_policy == "required",
                matter_pai=matter_pai_facts(ca.certificate_pem) if ca is not None else None,
                issuing_ca_at_agent=ca is not None and ca.key_ref.startswith(EXTERNAL_KEY),
                onboarding=_onboarding(given),
            )
        )
        lifetime = timedelta(days=product.cert_lifetime_days) if product.cert_lifetime_days else None
        issuer = inst.cas.issuer(unit.issuing_ca, s)
        cert = device_certificate(
            inst, issuer, checked.public_key, Serial(unit.serial), product.id, now, lifetime, unit.issuing_ca
        )
        old_serial, old_key = unit.cert_serial, unit.key_fingerprint
        s.add(
            SupersededCertificate(
                cert_serial=old_serial,
                issuing_ca=unit.issuing_ca,
                product_id=unit.product_id,
                unit_serial=unit.serial,
                cert_sha256=unit.cert_sha256,
                superseded_at=now,
            )
        )
        unit.certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        unit.cert_serial = format(cert.serial_number, "x")
        unit.cert_sha256 = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        unit.key_fingerprint = new_key
        if new_key != old_key:
            unit.attestation = None  # what backed the old key says nothing about the new one
        append_event(
            s,
            "unit.reenrolled",
            at=now,
            actor=f"unit:{unit.serial}",
            order_id=unit.order_id,
            serial=unit.serial,
            detail={
                "old_cert_serial": old_serial,
                "old_cert_revoked": "superseded",
                "cert_serial": unit.cert_serial,
                "cert_sha256": unit.cert_sha256,
                "key_changed": new_key != old_key,
                "key_fingerprint": new_key,
            },
        )
        pem, order_id, ca_name = unit.certificate_pem, unit.order_id, unit.issuing_ca
        serial = unit.serial
    return Provisioned(serial, order_id, pem, inst.cas.chain_pem(ca_name), False), ca_name


def _onboarding(given: UnitIdentityRow | None) -> tuple[int, int] | None:
    """The vendor and product ID of the unit's onboarding payload, if its allocation has Matter data."""
    if given is None or given.vendor_id is None or given.matter_product_id is None:
        return None
    return given.vendor_id, given.matter_product_id


__all__ = ["reenroll_unit"]
