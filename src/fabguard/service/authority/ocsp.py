"""The OCSP responder (RFC 6960): the status of a certificate this instance's CAs issued, read from the
database and signed by the CA's delegated responder.

Each CA with its key here (the root, the station CA, every issuing CA) answers through a responder
certificate of its own (``pki.ocsp.responder_certificate``), made with a new key in the instance's key store
(a file or the PKCS#11 token, like the CA's) and renewed, with another new key, ``RESPONDER_RENEWAL``
before it expires; keys of responders that have expired are deleted. A response is valid for
``RESPONSE_VALIDITY``. This process keeps the responses it signed (without a nonce) by CA and serial and
serves one again only while the certificate's status, read from the database on every request, is still
the one it says: a revocation, committed by any process, is answered at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import ocsp
from fabguard.pki.profiles import Issuer
from fabguard.service.core.ca_registry import EXTERNAL_KEY
from fabguard.service.core.instance import Instance
from fabguard.store.models import CertificateAuthority, Fixture, OcspResponder, SupersededCertificate, Unit

# A responder certificate with id-pkix-ocsp-nocheck cannot be revoked in any way relying parties see
# (RFC 6960 4.2.2.2.1), so it lives a week and is renewed, with a new key, when two days are left.
RESPONDER_LIFETIME = timedelta(days=7)
RESPONDER_RENEWAL = timedelta(days=2)
# How long a relying party may keep an answer (nextUpdate); a kept response is signed again once less
# than half of this is left, so what a cache receives is always valid for at least half an hour.
RESPONSE_VALIDITY = timedelta(hours=1)
RESPONSE_FRESH_FOR = RESPONSE_VALIDITY / 2
# The CAs that answer: their certificates name the responder in Authority Information Access.
ANSWERING_ROLES = ("root", "station", "issuing")
# A site agent's CA answers too once its first sync brought its delegation to this server's status signer
# (ADR 0020): that responder lasts the agent CA's life and is never renewed here (the CA's key is the agent's).
AGENT_ROLE = "agent"


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """An OCSP response (DER) with its HTTP status; for one an HTTP cache may keep, when it was signed and
    how many seconds are left until its nextUpdate (None: not to be kept, as an answer to a nonce or an error)."""

    der: bytes
    http_status: int = 200
    max_age: int | None = None
    this_update: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Authority:
    name: str
    role: str
    certificate: x509.Certificate
    state: str
    revoked_at: datetime | None


def respond(inst: Instance, request_der: bytes) -> OcspAnswer:
    """Answer an OCSP request (DER): malformedRequest (HTTP 400) for what is not one, unauthorized for a
    certificate of a CA that does not answer here, else the certificate's status, signed."""
    try:
        query = ocsp.parse_request(request_der)
    except InvalidRequest:
        return OcspAnswer(ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST), 400)
    with inst.db.read() as s:
        authority = _authority(s, query)
        if authority is None:
            return OcspAnswer(ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED))
        status = _status(s, authority, query.serial_number)
    now = inst.clock()
    cache = inst.ocsp.responses
    if query.nonce is None:
        kept = cache.get(authority.name, query.serial_number, status, now=now, fresh_for=RESPONSE_FRESH_FOR)
        if kept is not None:
            return _cacheable(kept, now)
    response = ocsp.build_response(query, status, responder(inst, authority.name), now=now, valid_for=RESPONSE_VALIDITY)
    der = response.public_bytes(serialization.Encoding.DER)
    if query.nonce is not None:
        return OcspAnswer(der)  # made for this request alone
    next_update = response.next_update_utc or now
    cache.put(authority.name, query.serial_number, ocsp.CachedResponse(status, der, now, next_update))
    return _cacheable(der, now)


def _cacheable(der: bytes, now: datetime) -> OcspAnswer:
    response = x509_ocsp.load_der_ocsp_response(der)
    next_update = response.next_update_utc or now
    return OcspAnswer(
        der, max_age=max(0, int((next_update - now).total_seconds())), this_update=response.this_update_utc
    )


def _authority(s: Session, query: ocsp.CertQuery) -> _Authority | None:
    """The answering CA whose name and key ``query`` names, if any."""
    rows = s.execute(
        select(CertificateAuthority).where(
            CertificateAuthority.certificate_pem.is_not(None),
            (CertificateAuthority.role.in_(ANSWERING_ROLES) & CertificateAuthority.key_ref.not_like(f"{EXTERNAL_KEY}%"))
            | (
                (CertificateAuthority.role == AGENT_ROLE)
                & CertificateAuthority.name.in_(select(OcspResponder.ca).scalar_subquery())
            ),
        )
    ).scalars()
    for row in rows:
        cert = x509.load_pem_x509_certificate(str(row.certificate_pem).encode())
        if ocsp.names(query, cert):
            return _Authority(row.name, row.role, cert, row.state, row.revoked_at)
    return None


def _status(s: Session, authority: _Authority, serial_number: int) -> ocsp.CertStatus:
    """What the database says of the certificate ``serial_number`` that ``authority`` issued."""
    serial = format(serial_number, "x")
    found: tuple[datetime | None, str] | None = None
    if authority.role in ("issuing", AGENT_ROLE):
        unit = s.execute(
            select(Unit.revoked_at, Unit.revocation_reason).where(
                Unit.cert_serial == serial, Unit.issuing_ca == authority.name
            )
        ).first()
        found = None if unit is None else (unit[0], unit[1] or "unspecified")
        if found is None:  # a certificate re-enrolment replaced
            superseded_at = s.execute(
                select(SupersededCertificate.superseded_at).where(
                    SupersededCertificate.cert_serial == serial, SupersededCertificate.issuing_ca == authority.name
                )
            ).scalar_one_or_none()
            found = None if superseded_at is None else (superseded_at, "superseded")
    elif authority.role == "station":
        fixture = s.execute(select(Fixture.revoked_at).where(Fixture.cert_serial == serial)).first()
        found = None if fixture is None else (fixture[0], "cessation_of_operation")
    else:  # the root answers for the CAs it certified
        for row in s.execute(select(CertificateAuthority).where(CertificateAuthority.cert_serial == serial)).scalars():
            issued = x509.load_pem_x509_certificate(str(row.certificate_pem).encode())
            if issued.issuer == authority.certificate.subject:
                found = (row.revoked_at, row.revocation_reason or "unspecified")
    if found is None:
        return ocsp.UNKNOWN
    if authority.state == "revoked" and authority.revoked_at is not None:
        return ocsp.revoked(authority.revoked_at, "ca_compromise")  # RFC 6960 2.2: its CA is revoked
    revoked_at, reason = found
    return ocsp.GOOD if revoked_at is None else ocsp.revoked(revoked_at, reason)


def responder(inst: Instance, ca: str) -> Issuer:
    """``ca``'s delegated responder (its certificate and key), made or renewed first if it is missing or has
    less than ``RESPONDER_RENEWAL`` left."""
    now = inst.clock()
    state = inst.ocsp
    with state.lock:
        loaded = state.responders.get(ca)
    if loaded is not None and loaded.certificate.not_valid_after_utc - now > RESPONDER_RENEWAL:
        return loaded
    with inst.db.read() as s:
        row = _newest(s, ca)
        authority = s.get(CertificateAuthority, ca)
    delegated = authority is not None and authority.role == AGENT_ROLE  # its status signer, never renewed here
    if row is None or (row.not_after - now <= RESPONDER_RENEWAL and not delegated):
        row = renew_responder(inst, ca)
    current = Issuer(x509.load_pem_x509_certificate(row.certificate_pem.encode()), inst.keys.load(row.key_ref))
    with state.lock:
        state.responders[ca] = current
    return current


def _newest(s: Session, ca: str) -> OcspResponder | None:
    return s.execute(
        select(OcspResponder).where(OcspResponder.ca == ca).order_by(OcspResponder.not_after.desc()).limit(1)
    ).scalar_one_or_none()


def renew_responder(inst: Instance, ca: str, *, force: bool = False) -> OcspResponder:
    """Make ``ca`` a new responder (a new key, a new certificate) unless another process just did, and delete
    the keys of its responders that have expired. With ``force``, a new one whatever the current one's age."""
    issuer = inst.cas.issuer(ca)
    with inst.db.transaction() as s:
        # The CA's row, locked: processes renewing at once take turns, and the second finds the first's.
        s.execute(select(CertificateAuthority.name).where(CertificateAuthority.name == ca).with_for_update())
        now = inst.clock()
        newest = _newest(s, ca)
        if newest is not None and newest.not_after - now > RESPONDER_RENEWAL and not force:
            return newest
        key_ref = inst.keys.generate(f"ocsp-{ca}-{secrets.token_hex(4)}")
        cert = ocsp.responder_certificate(issuer, inst.keys.load(key_ref).public_key(), now, RESPONDER_LIFETIME)
        row = OcspResponder(
            ca=ca,
            key_ref=key_ref,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            cert_serial=format(cert.serial_number, "x"),
            not_after=cert.not_valid_after_utc,
            created_at=now,
        )
        s.add(row)
        expired = list(
            s.execute(select(OcspResponder).where(OcspResponder.ca == ca, OcspResponder.not_after < now)).scalars()
        )
        for old in expired:
            s.delete(old)
    for old in expired:
        inst.keys.destroy(old.key_ref)
    inst.ocsp.responses.forget(ca)
    with inst.ocsp.lock:
        inst.ocsp.responders.pop(ca, None)
    return row


def answering_cas(inst: Instance) -> list[str]:
    """The CAs that answer OCSP requests here."""
    with inst.db.read() as s:
        return list(
            s.execute(
                select(CertificateAuthority.name).where(
                    CertificateAuthority.role.in_(ANSWERING_ROLES),
                    CertificateAuthority.certificate_pem.is_not(None),
                    CertificateAuthority.key_ref.not_like(f"{EXTERNAL_KEY}%"),
                )
            ).scalars()
        )


def renew_responders(inst: Instance) -> None:
    """Make or renew every answering CA's responder that needs it (a server's maintenance round)."""
    for ca in answering_cas(inst):
        responder(inst, ca)


__all__ = ["OcspAnswer", "answering_cas", "renew_responder", "renew_responders", "respond", "responder"]
