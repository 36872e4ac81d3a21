"""What an instance checks before it imports what a ceremony signed (``pki.ceremony``'s signed bundle): each
certificate is for the key the instance holds, of the profile asked for (a CA with pathLen 0, or a licence
signer: no CA, digitalSignature only, the critical licence-signing EKU), signed directly by the bundle's root
(the instance's own, once it has one); the root's CRL is signed by it, newer than the one served, and lists
every certificate the instance revoked under it (CAs and licence signers). A bundle that fails any check is
refused whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from fabguard.domain.errors import Conflict, InvalidRequest
from fabguard.pki.ceremony import LICENCE_SIGNER, SignedBundle
from fabguard.pki.licence import LICENCE_SIGNING_EKU


@dataclass(frozen=True, slots=True)
class Expected:
    """What the instance holds for a CA waiting for its certificate: its key, subject and profile."""

    public_key: PublicKeyTypes
    subject: x509.Name
    profile: str


def check_signed(
    bundle: SignedBundle,
    expected: Mapping[str, Expected],
    *,
    known_root: x509.Certificate | None,
    current_crl_number: int | None,
    revoked_serials: Sequence[int],
    now: datetime,
) -> None:
    """Refuse a signed bundle the instance must not import (nothing is imported then)."""
    _check_root(bundle.root, known_root, now)
    for name, cert in bundle.certificates.items():
        if name not in expected:
            raise Conflict(f"no CA {name[:63]!r} waits for a certificate here", code="ca_not_pending")
        _check_certificate(name, cert, expected[name], bundle.root, bundle.profiles_of.get(name))
    check_root_crl(bundle.crl, bundle.root, current_crl_number=current_crl_number, revoked_serials=revoked_serials)


def _check_root(root: x509.Certificate, known_root: x509.Certificate | None, now: datetime) -> None:
    if known_root is not None and root != known_root:
        raise InvalidRequest("the bundle's root is not this instance's root", code="certificate_untrusted")
    try:
        root.verify_directly_issued_by(root)
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        raise InvalidRequest(
            "the bundle's root is not a self-signed CA certificate", code="certificate_untrusted"
        ) from None
    if not constraints.ca or not root.not_valid_before_utc <= now <= root.not_valid_after_utc:
        raise InvalidRequest("the bundle's root is not a CA valid now", code="certificate_untrusted")


def _check_certificate(
    name: str, cert: x509.Certificate, want: Expected, root: x509.Certificate, profile: str | None
) -> None:
    if cert.public_key() != want.public_key:
        raise InvalidRequest(
            f"the certificate for {name} is not for the key this instance holds", code="certificate_key_mismatch"
        )
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidRequest(
            f"the certificate for {name} is not signed by the root", code="certificate_untrusted"
        ) from None
    if want.profile == LICENCE_SIGNER:
        _check_licence_signer(name, cert, want, profile)
        return
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise InvalidRequest(f"the certificate for {name} is not a CA certificate", code="certificate_not_ca") from None
    if not bc.ca or not usage.key_cert_sign:
        raise InvalidRequest(f"the certificate for {name} is not a CA certificate", code="certificate_not_ca")
    if bc.path_length != 0 or profile != want.profile or cert.subject != want.subject or not usage.crl_sign:
        raise InvalidRequest(
            f"the certificate for {name} is not the {want.profile} profile asked for (subject, pathLen 0, key usage)",
            code="ceremony_profile_mismatch",
        )


def _check_licence_signer(name: str, cert: x509.Certificate, want: Expected, profile: str | None) -> None:
    """The profile of ``pki.licence.licence_signer_certificate``: what ``verify_licence`` on a device accepts."""
    mismatch = InvalidRequest(
        f"the certificate for {name} is not the licence-signer profile asked for (subject, not a CA, "
        "digitalSignature only, the critical licence-signing EKU)",
        code="ceremony_profile_mismatch",
    )
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise mismatch from None
    if bc.ca or usage.key_cert_sign or usage.crl_sign or not usage.digital_signature:
        raise mismatch
    if not eku.critical or list(eku.value) != [LICENCE_SIGNING_EKU]:
        raise mismatch
    if profile != want.profile or cert.subject != want.subject:
        raise mismatch


def check_root_crl(
    crl: x509.CertificateRevocationList,
    root: x509.Certificate,
    *,
    current_crl_number: int | None,
    revoked_serials: Sequence[int],
) -> None:
    """The root's CRL: signed by it, newer than the one served, listing every certificate the instance revoked
    under the root (CAs and licence signers)."""
    if crl.issuer != root.subject or not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise InvalidRequest("the CRL is not signed by the root", code="crl_invalid")
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise InvalidRequest("the CRL has no CRL number", code="crl_invalid") from None
    if current_crl_number is not None and number <= current_crl_number:
        raise InvalidRequest(
            f"the CRL's number {number} is not above the one served ({current_crl_number})", code="crl_invalid"
        )
    missing = sorted(s for s in revoked_serials if crl.get_revoked_certificate_by_serial_number(s) is None)
    if missing:
        raise InvalidRequest(
            f"the CRL leaves out {len(missing)} revoked certificate(s), e.g. serial {missing[0]:x}",
            code="crl_invalid",
        )


__all__ = ["Expected", "check_root_crl", "check_signed"]
