"""An OCSP responder's pure core (RFC 6960): reading a request, the delegated responder's certificate, and
signing an answer about one certificate. No database, no clock, no network: the caller says which CA the
request names, what the certificate's status is and what time it is.

Each CA answers through a responder certificate it issued (RFC 6960 4.2.2.2: id-kp-OCSPSigning) with a key
of its own, so the CA's key signs only that certificate. The responder certificate carries
id-pkix-ocsp-nocheck (4.2.2.2.1): relying parties do not ask about the responder itself, so it lives
days, not years.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from threading import Lock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabguard.domain.errors import InvalidRequest
from fabguard.pki.crl import REASONS
from fabguard.pki.profiles import BACKDATE, Issuer, hash_for, signature_key_usage

# RFC 8954 2.1: a nonce of 1 to 32 octets; a responder refuses a longer one as malformed.
MAX_NONCE_BYTES = 32
# CertID hash algorithms accepted (OpenSSL asks with SHA-1 by default; RFC 6960 allows others).
CERT_ID_HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512")


@dataclass(frozen=True, slots=True)
class CertQuery:
    """What an OCSP request asks: the status of ``serial_number`` under the CA whose name and key hash to
    ``issuer_name_hash`` and ``issuer_key_hash`` with ``hash_algorithm``; ``nonce`` to echo, if sent."""

    hash_algorithm: hashes.HashAlgorithm
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    nonce: bytes | None


@dataclass(frozen=True, slots=True)
class CertStatus:
    """A certificate's status: ``good``, ``revoked`` (with its time and reason name, as in ``crl.REASONS``)
    or ``unknown`` (not issued by that CA, as far as the responder knows)."""

    state: str
    revoked_at: datetime | None = None
    reason: str = "unspecified"


GOOD = CertStatus("good")
UNKNOWN = CertStatus("unknown")


def revoked(at: datetime, reason: str) -> CertStatus:
    return CertStatus("revoked", at, reason)


def malformed(message: str) -> InvalidRequest:
    return InvalidRequest(
        f"not an OCSP request this responder reads: {message}", code="ocsp_request_malformed", status=400
    )


def parse_request(der: bytes) -> CertQuery:
    """The one certificate an OCSP request (DER) asks about; ``ocsp_request_malformed`` if it is not one."""
    try:
        request = ocsp.load_der_ocsp_request(der)
        algorithm = request.hash_algorithm
        query = CertQuery(
            algorithm, request.issuer_name_hash, request.issuer_key_hash, request.serial_number, _nonce(request)
        )
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        # cryptography reads one certificate per request (the usual case); a list of several is refused too.
        raise malformed(str(exc)[:200]) from None
    if algorithm.name not in CERT_ID_HASHES:
        raise malformed(f"CertID hashed with {algorithm.name}")
    return query


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
    if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise ValueError(f"a nonce of {len(nonce)} bytes (RFC 8954: 1 to {MAX_NONCE_BYTES})")
    return nonce


def _public_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's bits of a DER SubjectPublicKeyInfo: what issuerKeyHash hashes."""

    def tlv(at: int) -> tuple[int, int]:  # (start of contents, end) of the element at ``at``
        size, at = spki[at + 1], at + 2
        if size & 0x80:
            count = size & 0x7F
            size, at = int.from_bytes(spki[at : at + count], "big"), at + count
        return at, at + size

    contents, _ = tlv(0)  # the SEQUENCE
    _, algorithm_end = tlv(contents)  # AlgorithmIdentifier
    bits, end = tlv(algorithm_end)  # BIT STRING: its first octet counts unused bits (0 for a key)
    return spki[bits + 1 : end]


def issuer_hashes(ca: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of certificates that ``ca`` signed, with ``algorithm`` (RFC 6960 4.1.1)."""
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    name, key = ca.subject.public_bytes(), _public_key_bits(spki)
    return hashlib.new(algorithm.name, name).digest(), hashlib.new(algorithm.name, key).digest()


def names(query: CertQuery, ca: x509.Certificate) -> bool:
    """Whether ``query`` asks about a certificate issued by ``ca``."""
    return issuer_hashes(ca, query.hash_algorithm) == (query.issuer_name_hash, query.issuer_key_hash)


def responder_certificate(
    ca: Issuer, public_key: CertificateIssuerPublicKeyTypes, now: datetime, lifetime: timedelta
) -> x509.Certificate:
    """The delegated OCSP responder certificate of ``ca``: signs OCSP responses only (digitalSignature,
    id-kp-OCSPSigning), not itself checked (id-pkix-ocsp-nocheck), never beyond the CA's own validity."""
    start = now - BACKDATE
    organization = ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    common = ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    label = str(common[0].value if common else "CA")[:49]
    subject = x509.Name([*organization, x509.NameAttribute(NameOID.COMMON_NAME, f"{label} OCSP responder")])
    until = min(start + lifetime, ca.certificate.not_valid_after_utc)
    return delegated_responder(ca, public_key, subject, start, until)


def delegated_responder(
    ca: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    subject: x509.Name,
    not_before: datetime,
    not_after: datetime,
    *,
    crl_sign: bool = False,
) -> x509.Certificate:
    """A certificate ``ca`` issues directly to ``public_key`` to answer OCSP for it (RFC 6960 4.2.2.2:
    CA:FALSE, digitalSignature, id-kp-OCSPSigning, id-pkix-ocsp-nocheck), and with ``crl_sign`` to sign its
    CRLs too (an agent CA's status signer, ``agent_status``)."""
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(signature_key_usage(crl_sign=crl_sign), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca.key, hash_for(ca.key))
    )


def build_response(
    query: CertQuery, status: CertStatus, responder: Issuer, *, now: datetime, valid_for: timedelta
) -> ocsp.OCSPResponse:
    """A successful response about ``query``'s certificate, signed by the delegated ``responder``: valid from
    ``now`` for ``valid_for`` (never past the responder's own validity), with the request's nonce if it sent one."""
    next_update = min(now + valid_for, responder.certificate.not_valid_after_utc)
    cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED}.get(
        status.state, ocsp.OCSPCertStatus.UNKNOWN
    )
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=query.issuer_name_hash,
            issuer_key_hash=query.issuer_key_hash,
            serial_number=query.serial_number,
            algorithm=query.hash_algorithm,
            cert_status=cert_status,
            this_update=now,
            next_update=next_update,
            revocation_time=status.revoked_at if cert_status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=REASONS.get(status.reason) if cert_status is ocsp.OCSPCertStatus.REVOKED else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
        .certificates([responder.certificate])
    )
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    return builder.sign(responder.key, hash_for(responder.key))


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error response (malformedRequest, unauthorized, internalError, ...), DER."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: CertStatus
    der: bytes
    this_update: datetime
    next_update: datetime


@dataclass
class ResponseCache:
    """Signed responses without a nonce, by (CA, serial), for their validity; bounded, oldest out first. An
    entry serves only while the certificate's status is still the one it says (the caller compares)."""

    capacity: int = 10_000
    lock: Lock = field(default_factory=Lock)
    entries: OrderedDict[tuple[str, int], CachedResponse] = field(default_factory=OrderedDict)

    def get(self, ca: str, serial: int, status: CertStatus, *, now: datetime, fresh_for: timedelta) -> bytes | None:
        """The cached response if it says ``status`` and has ``fresh_for`` of its validity left at ``now``."""
        with self.lock:
            entry = self.entries.get((ca, serial))
        if entry is None or entry.status != status or entry.next_update - now < fresh_for:
            return None
        return entry.der

    def put(self, ca: str, serial: int, entry: CachedResponse) -> None:
        with self.lock:
            self.entries[(ca, serial)] = entry
            self.entries.move_to_end((ca, serial))
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)

    def forget(self, ca: str | None = None) -> None:
        """Drop the responses of ``ca`` (every CA's with None): its responder changed."""
        with self.lock:
            for key in [k for k in self.entries if ca is None or k[0] == ca]:
                del self.entries[key]


@dataclass
class OcspState:
    """An OCSP responder's state in one process: its signed responses, and each CA's responder as loaded."""

    responses: ResponseCache = field(default_factory=ResponseCache)
    responders: dict[str, Issuer] = field(default_factory=dict)
    lock: Lock = field(default_factory=Lock)


__all__ = [
    "GOOD",
    "UNKNOWN",
    "CachedResponse",
    "CertQuery",
    "CertStatus",
    "OcspState",
    "ResponseCache",
    "build_response",
    "delegated_responder",
    "issuer_hashes",
    "names",
    "parse_request",
    "responder_certificate",
    "revoked",
    "unsuccessful",
]
