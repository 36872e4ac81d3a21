"""Checking a presented certificate chain against a product's trusted attestation roots.

The chain is leaf first (the AK certificate, or the secure element's device certificate), then any
intermediates; it must end at a certificate a trusted root issued (or at the root itself). Each link's
signature and every validity window are checked, and so is each certificate's fitness for its place: every
issuer (the root too) is a CA, may sign certificates (keyCertSign, when it has keyUsage) and has no more
CAs under it than its pathLenConstraint allows; the leaf is not a CA. ``ak_certificate`` adds what a TPM's
AK certificate must carry. Nothing here reaches a network.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import Refusal

MAX_CHAIN = 4
MAX_CERT_PEM = 8192
TCG_KP_AIK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.3")


def load_chain(value: object, what: str) -> tuple[x509.Certificate, ...]:
    """A JSON list of 1 to MAX_CHAIN PEM certificates, leaf first."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CHAIN:
        raise Refusal("attestation_invalid", f"{what} must be a list of 1 to {MAX_CHAIN} PEM certificates")
    chain = []
    for pem in value:
        if not isinstance(pem, str) or len(pem) > MAX_CERT_PEM:
            raise Refusal("attestation_invalid", f"each certificate of {what} must be a PEM string")
        chain.append(readable(pem, what))
    return tuple(chain)


def readable(pem: str, what: str) -> x509.Certificate:
    """A PEM certificate whose key, extensions and names all parse (so later checks cannot stumble on them)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.public_key()
        list(cert.extensions)
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise Refusal("attestation_invalid", f"a certificate of {what} cannot be read") from None
    return cert


def certificate_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _basic_constraints(cert)
    return constraints is not None and constraints.ca


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _may_issue(issuer: x509.Certificate, cas_below: int) -> bool:
    """A CA that may sign certificates, with ``cas_below`` CA certificates between it and the leaf."""
    constraints = _basic_constraints(issuer)
    if constraints is None or not constraints.ca:
        return False
    if constraints.path_length is not None and cas_below > constraints.path_length:
        return False
    usage = _key_usage(issuer)
    return usage is None or usage.key_cert_sign


def _in_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def ak_certificate(cert: x509.Certificate) -> None:
    """A TPM attestation key's certificate, not any certificate a TPM maker's CA issued (an IDevID's key
    signs whatever its holder likes): not a CA, digitalSignature when it has keyUsage, and the TCG AK
    certificate purpose (tcg-kp-AIKCertificate, 2.23.133.8.3) in extendedKeyUsage."""
    usage = _key_usage(cert)
    try:
        purposes = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        purposes = []
    if _is_ca(cert) or (usage is not None and not usage.digital_signature):
        raise Refusal("attestation_untrusted", "the AK certificate is not an attestation key's certificate")
    if TCG_KP_AIK_CERTIFICATE not in purposes:
        raise Refusal(
            "attestation_untrusted",
            "the AK certificate lacks the TCG AK certificate purpose (extendedKeyUsage 2.23.133.8.3)",
        )


def trusted_root(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime, what: str
) -> x509.Certificate:
    """The trusted root the chain ends at; ``attestation_untrusted`` if it ends anywhere else, or if a
    certificate is unfit for its place in it."""
    for cert in chain:
        if not _in_validity(cert, now):
            raise Refusal("attestation_untrusted", f"a certificate of {what} is outside its validity period")
    last = chain[-1]
    root_digests = {certificate_sha256(r) for r in roots}
    if len(chain) == 1 and certificate_sha256(last) in root_digests:
        raise Refusal("attestation_untrusted", f"{what} is a trusted root itself, not a key it vouches for")
    if _is_ca(chain[0]):
        raise Refusal("attestation_untrusted", f"the first certificate of {what} is a CA, not a key's certificate")
    unfit = f"{what} has an issuer that may not issue it (not a CA, no keyCertSign, or its path length exceeded)"
    for below, (child, issuer) in enumerate(itertools.pairwise(chain)):
        if not _issued_by(child, issuer):
            raise Refusal("attestation_untrusted", f"{what} is not a chain: a certificate is not issued by the next")
        if not _may_issue(issuer, below):
            raise Refusal("attestation_untrusted", unfit)
    if certificate_sha256(last) in root_digests:
        return last
    issuers = [r for r in roots if _in_validity(r, now) and _issued_by(last, r)]
    for root in issuers:
        if _may_issue(root, len(chain) - 1):
            return root
    if issuers:
        raise Refusal("attestation_untrusted", unfit)
    raise Refusal("attestation_untrusted", f"{what} does not end at a trusted root of this product")
