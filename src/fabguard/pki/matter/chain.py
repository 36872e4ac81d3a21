"""Checking Matter attestation certificates and the PAA -> PAI -> DAC chain offline (6.1, 6.2.2, 6.2.3.1)."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from fabguard.pki.matter.identity import AttestationProfileError, AttestationRole, subject_ids, utc

_KEY_ID_OCTETS = 20  # 6.1: key identifiers are the 160-bit SHA-1 of subjectPublicKey (RFC 5280 4.2.1.2 method 1)
_MAX_SERIAL_OCTETS = 20  # RFC 5280 4.1.2.2, which 6.2.2 repeats for all three certificates

_E = TypeVar("_E", bound=x509.ExtensionType)


def _fail(role: AttestationRole, rule: str, message: str) -> NoReturn:
    raise AttestationProfileError(rule, f"{role}: {message}")


def _extension(cert: x509.Certificate, kind: type[_E], role: AttestationRole, rule: str, critical: bool) -> _E | None:
    try:
        ext = cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    if ext.critical != critical:
        _fail(role, rule, f"{kind.__name__} must {'' if critical else 'not '}be marked critical")
    return ext.value


def _check_basic_constraints(cert: x509.Certificate, role: AttestationRole) -> None:
    bc = _extension(cert, x509.BasicConstraints, role, "basic-constraints", critical=True)
    if bc is None:
        _fail(role, "basic-constraints", "basicConstraints is missing")
    allowed = {AttestationRole.DAC: (None,), AttestationRole.PAI: (0,), AttestationRole.PAA: (None, 1)}[role]
    if bc.ca != (role is not AttestationRole.DAC) or bc.path_length not in allowed:
        _fail(role, "basic-constraints", f"basicConstraints is cA={bc.ca}, pathLen={bc.path_length}")


def _check_key_usage(cert: x509.Certificate, role: AttestationRole) -> None:
    ku = _extension(cert, x509.KeyUsage, role, "key-usage", critical=True)
    if ku is None:
        _fail(role, "key-usage", "keyUsage is missing")
    others = [ku.content_commitment, ku.key_encipherment, ku.data_encipherment, ku.key_agreement]
    if role is AttestationRole.DAC:
        ok = ku.digital_signature and not (ku.key_cert_sign or ku.crl_sign or any(others))
        expected = "digitalSignature only"
    else:
        # digitalSignature is allowed beside keyCertSign and cRLSign on CAs; nothing else is.
        ok = ku.key_cert_sign and ku.crl_sign and not any(others)
        expected = "keyCertSign and cRLSign (digitalSignature optional), nothing else"
    if not ok:
        _fail(role, "key-usage", f"keyUsage must be {expected}")


def _check_key_ids(cert: x509.Certificate, role: AttestationRole) -> None:
    ski = _extension(cert, x509.SubjectKeyIdentifier, role, "subject-key-id", critical=False)
    if ski is None or len(ski.digest) != _KEY_ID_OCTETS:
        _fail(role, "subject-key-id", f"subjectKeyIdentifier must be present with {_KEY_ID_OCTETS} octets")
    aki = _extension(cert, x509.AuthorityKeyIdentifier, role, "authority-key-id", critical=False)
    if aki is None:
        if role is not AttestationRole.PAA:
            _fail(role, "authority-key-id", "authorityKeyIdentifier is missing")
        return
    if aki.key_identifier is None or len(aki.key_identifier) != _KEY_ID_OCTETS:
        _fail(role, "authority-key-id", f"authorityKeyIdentifier must hold a {_KEY_ID_OCTETS}-octet keyIdentifier")
    if role is AttestationRole.PAA and aki.key_identifier != ski.digest:
        _fail(
            role, "authority-key-id", "a self-signed PAA's authorityKeyIdentifier must equal its subjectKeyIdentifier"
        )


def _check_ids(cert: x509.Certificate, role: AttestationRole) -> None:
    try:
        vid, pid = subject_ids(cert.subject)
    except AttestationProfileError as exc:
        _fail(role, exc.rule, exc.message)
    if role is AttestationRole.PAA and pid is not None:
        _fail(role, "paa-without-pid", f"a PAA never carries a product ID (found {pid})")
    if role is AttestationRole.PAI and vid is None:
        _fail(role, "pai-has-vid", "a PAI must carry a vendor ID")
    if role is AttestationRole.DAC and (vid is None or pid is None):
        _fail(role, "dac-has-vid-and-pid", "a DAC must carry both a vendor ID and a product ID")


def check_attestation_certificate(cert: x509.Certificate, role: AttestationRole) -> None:
    """Check one certificate against the profile of its role (6.1, 6.2.2), as a verifier does before the chain."""
    if cert.version is not x509.Version.v3:
        _fail(role, "version", f"the certificate is {cert.version.name}, not v3")
    serial = cert.serial_number
    if serial <= 0 or serial.bit_length() // 8 + 1 > _MAX_SERIAL_OCTETS:
        _fail(role, "serial-number", f"the serial number must be positive and at most {_MAX_SERIAL_OCTETS} octets")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        _fail(
            role,
            "signature-algorithm",
            f"signed with {cert.signature_algorithm_oid.dotted_string}, not ecdsa-with-SHA256",
        )
    try:
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        _fail(role, "public-key", "the public key cannot be read")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        _fail(role, "public-key", "the public key is not ECDSA on P-256")
    if cert.not_valid_before_utc >= cert.not_valid_after_utc:
        _fail(role, "validity-period", "notBefore is not before notAfter")
    _check_basic_constraints(cert, role)
    _check_key_usage(cert, role)
    _check_key_ids(cert, role)
    _check_ids(cert, role)
    if role is AttestationRole.PAA:
        _check_issued_by(cert, cert, role)


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate, role: AttestationRole) -> None:
    if cert.issuer != issuer.subject:
        _fail(
            role, "issuer-name", f"the issuer {cert.issuer.rfc4514_string()} is not {issuer.subject.rfc4514_string()}"
        )
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    if aki.key_identifier != ski.digest:
        _fail(role, "key-id-linkage", "the authorityKeyIdentifier is not the issuer's subjectKeyIdentifier")
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        _fail(role, "signature", "the signature does not verify with the issuer's key")


def _valid_at(cert: x509.Certificate, t: datetime) -> bool:
    return cert.not_valid_before_utc <= t <= cert.not_valid_after_utc


def check_attestation_chain(
    dac: x509.Certificate, pai: x509.Certificate, paa: x509.Certificate, at: datetime | None = None
) -> None:
    """Check a PAA -> PAI -> DAC chain offline (6.2.3.1): profiles, links, signatures, VID/PID rules, times.

    Validity is judged at the DAC's notBefore, as the specification asks, so a DAC outlives its
    issuers; ``at`` additionally requires the DAC itself to be valid then. Raises
    ``AttestationProfileError`` naming the first rule broken.
    """
    for cert, role in ((paa, AttestationRole.PAA), (pai, AttestationRole.PAI), (dac, AttestationRole.DAC)):
        check_attestation_certificate(cert, role)
    _check_issued_by(pai, paa, AttestationRole.PAI)
    _check_issued_by(dac, pai, AttestationRole.DAC)

    dac_vid, dac_pid = subject_ids(dac.subject)
    pai_vid, pai_pid = subject_ids(pai.subject)
    paa_vid, _ = subject_ids(paa.subject)
    if dac_vid != pai_vid:
        _fail(AttestationRole.DAC, "dac-vid-matches-pai", f"vendor ID {dac_vid} differs from the PAI's {pai_vid}")
    if pai_pid is not None and dac_pid != pai_pid:
        _fail(AttestationRole.DAC, "dac-pid-matches-pai", f"product ID {dac_pid} differs from the PAI's {pai_pid}")
    if paa_vid is not None and pai_vid != paa_vid:
        _fail(AttestationRole.PAI, "pai-vid-matches-paa", f"vendor ID {pai_vid} differs from the PAA's {paa_vid}")

    issued = dac.not_valid_before_utc
    for issuer, role in ((pai, AttestationRole.PAI), (paa, AttestationRole.PAA)):
        if not _valid_at(issuer, issued):
            _fail(
                role, "issued-within-issuer-validity", f"not valid at the DAC's notBefore {issued:%Y-%m-%dT%H:%M:%SZ}"
            )
    if not _valid_at(paa, pai.not_valid_before_utc):
        _fail(AttestationRole.PAA, "issued-within-issuer-validity", "not valid at the PAI's notBefore")
    if at is not None and not _valid_at(dac, utc(at)):
        _fail(AttestationRole.DAC, "dac-valid-at-time", f"not valid at {utc(at):%Y-%m-%dT%H:%M:%SZ}")
