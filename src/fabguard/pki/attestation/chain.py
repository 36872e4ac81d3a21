"""Checking a presented certificate chain against a product's trusted attestation roots.

The chain is leaf first (the AK certificate, or the secure element's device certificate), then any
intermediates; it must end at a certificate a trusted root issued (or at the root itself). Each link's
signature, the issuers' CA flag and every validity window are checked; nothing here reaches a network.
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


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _in_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def trusted_root(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime, what: str
) -> x509.Certificate:
    """The trusted root the chain ends at; ``attestation_untrusted`` if it ends anywhere else."""
    for cert in chain:
        if not _in_validity(cert, now):
            raise Refusal("attestation_untrusted", f"a certificate of {what} is outside its validity period")
    for child, issuer in itertools.pairwise(chain):
        if not _is_ca(issuer) or not _issued_by(child, issuer):
            raise Refusal("attestation_untrusted", f"{what} is not a chain: a certificate is not issued by the next")
    last = chain[-1]
    root_digests = {certificate_sha256(r): r for r in roots}
    if certificate_sha256(last) in root_digests:
        if len(chain) == 1:
            raise Refusal("attestation_untrusted", f"{what} is a trusted root itself, not a key it vouches for")
        return last
    for root in roots:
        if _is_ca(root) and _in_validity(root, now) and _issued_by(last, root):
            return root
    raise Refusal("attestation_untrusted", f"{what} does not end at a trusted root of this product")
