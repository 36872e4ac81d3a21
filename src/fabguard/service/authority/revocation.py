"""Revoking units, whole orders and fixtures, and publishing each CA's CRL (which also lists the
certificates re-enrolment superseded).

A revocation and its ledger entry commit together; the CA's CRL is then re-signed at once (and
again on a schedule before it expires), so ``openssl verify -crl_check`` sees it immediately.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.pki.agent_status import build_indirect_crl
from fabguard.pki.crl import REASONS, RevokedEntry, build_crl
from fabguard.pki.profiles import Issuer
from fabguard.service.authority import ceremony_licences
from fabguard.service.core.ca_registry import EXTERNAL_KEY, STATUS_SIGNER_SUFFIX
from fabguard.service.core.instance import Instance
from fabguard.store.crls import insert_first_crl, lock_crl
from fabguard.store.eventlog import append_event
from fabguard.store.models import (
    CertificateAuthority,
    CrlRow,
    Fixture,
    OcspResponder,
    Order,
    SupersededCertificate,
    Unit,
)
from fabguard.store.quota_leases import QuotaLease

CRL_VALIDITY = timedelta(days=7)
# Re-sign when less than this is left, so a published CRL never lapses between scheduled runs.
CRL_REFRESH_MARGIN = timedelta(days=6)
AGENT_ROLE = "agent"  # a site agent's CA: its units' CRL is signed by its status signer, once synced (ADR 0020)


def _check_reason(reason_code: str, note: str) -> None:
    if reason_code not in REASONS:
        raise InvalidRequest(f"unknown reason {reason_code!r}; one of {', '.join(REASONS)}", code="invalid_reason")
    if not note or len(note) > 500 or not note.isprintable():
        raise InvalidRequest("a revocation needs a note of 1-500 printable characters", code="invalid_reason")


def revoke_unit(
    inst: Instance, serial: str, *, reason_code: str, note: str, actor: str, product_id: str | None = None
) -> dict[str, object]:
    _check_reason(reason_code, note)
    now = inst.clock()
    with inst.db.transaction() as s:
        q = select(Unit).where(Unit.serial == serial)
        if product_id:
            q = q.where(Unit.product_id == product_id)
        units = list(s.execute(q.with_for_update()).scalars())
        if not units:
            raise NotFound(f"no provisioned unit {serial!r}", code="unit_not_found")
        if len(units) > 1:
            raise InvalidRequest(
                f"serial {serial} exists in several products: name the product", code="ambiguous_serial"
            )
        unit = units[0]
        if unit.revoked_at is not None:
            raise Conflict(f"unit {serial} is already revoked", code="unit_revoked")
        unit.revoked_at, unit.revocation_reason = now, reason_code
        append_event(
            s,
            "unit.revoked",
            at=now,
            actor=actor,
            order_id=unit.order_id,
            serial=serial,
            detail={
                "cert_serial": unit.cert_serial,
                "reason": reason_code,
                "note": note,
                "product_id": unit.product_id,
            },
        )
    crl = unit.issuing_ca in ca_names(inst)  # not a site agent's CA that delegated to no status signer here
    if crl:
        refresh_crl(inst, unit.issuing_ca)
    return {
        "serial": serial,
        "order_id": unit.order_id,
        "cert_serial": unit.cert_serial,
        "reason": reason_code,
        "crl_updated": crl,
    }


def revoke_order_units(inst: Instance, order_id: str, *, reason_code: str, note: str, actor: str) -> int:
    """Revoke every unit of an order (a CM breach, a recalled batch). Returns how many were revoked."""
    _check_reason(reason_code, note)
    now = inst.clock()
    with inst.db.transaction() as s:
        if s.get(Order, order_id) is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        units = list(
            s.execute(
                select(Unit).where(Unit.order_id == order_id, Unit.revoked_at.is_(None)).with_for_update()
            ).scalars()
        )
        for unit in units:
            unit.revoked_at, unit.revocation_reason = now, reason_code
            append_event(
                s,
                "unit.revoked",
                at=now,
                actor=actor,
                order_id=order_id,
                serial=unit.serial,
                detail={
                    "cert_serial": unit.cert_serial,
                    "reason": reason_code,
                    "note": note,
                    "product_id": unit.product_id,
                },
            )
    held = set(ca_names(inst))  # a site agent's CA without a status signer here: its units are marked, no CRL
    for ca in sorted({u.issuing_ca for u in units} & held):
        refresh_crl(inst, ca)
    return len(units)


def _revoked_entries(s: Session, inst: Instance, ca: str, role: str) -> list[RevokedEntry]:
    if role in ("issuing", AGENT_ROLE):
        rows = s.execute(
            select(Unit.cert_serial, Unit.revoked_at, Unit.revocation_reason).where(
                Unit.revoked_at.is_not(None), Unit.issuing_ca == ca
            )
        ).all()
        entries = [RevokedEntry(int(c, 16), at, reason or "unspecified") for c, at, reason in rows if at is not None]
        # Certificates replaced by re-enrolment (RFC 5280 CRLReason superseded).
        superseded = s.execute(
            select(SupersededCertificate.cert_serial, SupersededCertificate.superseded_at).where(
                SupersededCertificate.issuing_ca == ca
            )
        ).all()
        return entries + [RevokedEntry(int(c, 16), at, "superseded") for c, at in superseded]
    if role == "station":
        frows = s.execute(
            select(Fixture.cert_serial, Fixture.revoked_at).where(
                Fixture.revoked_at.is_not(None), Fixture.cert_serial.is_not(None)
            )
        ).all()
        return [RevokedEntry(int(c, 16), at, "cessation_of_operation") for c, at in frows if c and at]
    # The root (or a Matter PAA) lists the revoked CAs it issued itself.
    subject = inst.cas.issuer(ca, s).certificate.subject
    cas = s.execute(
        select(CertificateAuthority).where(
            CertificateAuthority.state == "revoked", CertificateAuthority.certificate_pem.is_not(None)
        )
    ).scalars()
    entries = [
        RevokedEntry(int(str(r.cert_serial), 16), r.revoked_at, r.revocation_reason or "unspecified")
        for r in cas
        if r.revoked_at is not None
        and x509.load_pem_x509_certificate(str(r.certificate_pem).encode()).issuer == subject
    ]
    # ... and the revoked licence signers it certified (service/royalties/licence_acts.py).
    return entries + ceremony_licences.revoked_under(s, subject)


def _role(inst: Instance, ca: str) -> str:
    with inst.db.read() as s:
        row = s.get(CertificateAuthority, ca)
        delegated = row is not None and row.role == AGENT_ROLE and _status_signer(s, ca) is not None
    if row is None or row.certificate_pem is None or (row.key_ref.startswith(EXTERNAL_KEY) and not delegated):
        raise NotFound(f"no CA {ca!r} with a certificate and a key here", code="ca_not_found")
    return row.role


def _status_signer(s: Session, ca: str) -> OcspResponder | None:
    """A site agent CA's delegation to this server's status signer, once a sync brought it (ADR 0020)."""
    return s.execute(
        select(OcspResponder).where(OcspResponder.ca == ca).order_by(OcspResponder.not_after.desc()).limit(1)
    ).scalar_one_or_none()


def ca_names(inst: Instance) -> list[str]:
    """Every CA that publishes a CRL: all but those still waiting for their certificate, or whose key is
    elsewhere, unless (a site agent's) it certified this server's status signer to sign its units' CRL."""
    with inst.db.read() as s:
        return list(
            s.execute(
                select(CertificateAuthority.name).where(
                    CertificateAuthority.certificate_pem.is_not(None),
                    CertificateAuthority.key_ref.not_like(f"{EXTERNAL_KEY}%")
                    | (
                        (CertificateAuthority.role == AGENT_ROLE)
                        & CertificateAuthority.name.in_(select(OcspResponder.ca).scalar_subquery())
                    ),
                )
            ).scalars()
        )


Signer = Callable[[list[RevokedEntry], int, datetime], bytes]


def _signer(inst: Instance, ca: str, role: str) -> Signer:
    """What signs ``ca``'s CRL: the CA itself, or for a site agent's CA its status signer, as an indirect CRL
    at the distribution point the agent's units name (the lease's, whatever this server's URLs are now)."""
    if role != AGENT_ROLE:
        issuer = inst.cas.issuer(ca)
        return lambda entries, number, now: _signed(issuer, entries, number, now)
    with inst.db.read() as s:
        row, authority = _status_signer(s, ca), s.get(CertificateAuthority, ca)
        bundle = s.execute(select(QuotaLease.bundle).where(QuotaLease.agent_ca == ca)).scalar_one()
    assert row is not None and authority is not None and authority.certificate_pem is not None
    subject = x509.load_pem_x509_certificate(authority.certificate_pem.encode()).subject
    publication = json.loads(bundle)["publication"]
    crl_url = str(publication["crl_url"])
    signer_url = str(publication["ca_issuers_url"]).removesuffix(".crt") + f"{STATUS_SIGNER_SUFFIX}.crt"
    signer = Issuer(x509.load_pem_x509_certificate(row.certificate_pem.encode()), inst.keys.load(row.key_ref))

    def indirect(entries: list[RevokedEntry], number: int, now: datetime) -> bytes:
        crl = build_indirect_crl(
            signer, subject, crl_url, entries, number=number, now=now, valid_for=CRL_VALIDITY, signer_url=signer_url
        )
        return crl.public_bytes(serialization.Encoding.DER)

    return indirect


def refresh_crl(inst: Instance, ca: str) -> bytes:
    """Sign a new CRL for ``ca`` with the next CRL number and publish it, in one transaction that holds the
    CA's CRL row (its number counter) from reading the revocations to writing the CRL: concurrent publishers,
    in this process or others, take turns, so numbers strictly increase and none is used twice."""
    role = _role(inst, ca)
    sign = _signer(inst, ca, role)
    with inst.db.transaction() as s:
        row = lock_crl(s, ca)
        if row is None:
            now = inst.clock()
            der = sign(_revoked_entries(s, inst, ca, role), 1, now)
            if insert_first_crl(s, ca, der, now, now + CRL_VALIDITY):
                return der
            row = lock_crl(s, ca)  # another publisher's first CRL committed meanwhile: follow it
            assert row is not None
        now = inst.clock()
        der = sign(_revoked_entries(s, inst, ca, role), row.number + 1, now)
        row.number, row.der, row.this_update, row.next_update = row.number + 1, der, now, now + CRL_VALIDITY
    return der


def _signed(issuer: Issuer, entries: list[RevokedEntry], number: int, now: datetime) -> bytes:
    return build_crl(issuer, entries, number=number, now=now, valid_for=CRL_VALIDITY).public_bytes(
        serialization.Encoding.DER
    )


def current_crl(inst: Instance, ca: str) -> bytes:
    """The published CRL, re-signed first if it is missing or close to its nextUpdate; a CA whose key is
    elsewhere (an offline root) serves the CRL last imported from its ceremony, as it is."""
    with inst.db.read() as s:
        authority, published = s.get(CertificateAuthority, ca), s.get(CrlRow, ca)
        elsewhere = (
            authority is not None and authority.key_ref.startswith(EXTERNAL_KEY) and authority.role != AGENT_ROLE
        )
        if elsewhere and published is not None:
            return bytes(published.der)
    _role(inst, ca)
    with inst.db.read() as s:
        row = s.get(CrlRow, ca)
        if row is not None and row.next_update - inst.clock() > CRL_REFRESH_MARGIN:
            return bytes(row.der)
    return refresh_crl(inst, ca)


def crl(inst: Instance, ca: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(current_crl(inst, ca))
