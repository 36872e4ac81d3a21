"""Who answers for a site agent's units once the agent is gone: the central server's *status signer*, certified
by the agent CA itself (ADR 0020). Pure: certificates and keys in, certificates and CRLs out.

The agent CA's key stays at the agent, so the central server cannot sign an OCSP answer or a CRL as that CA.
Instead the agent CA delegates, once, at ``agent init``: it certifies a key the central server made for it (the
lease names the key) as its OCSP responder (RFC 6960 4.2.2.2: id-kp-OCSPSigning, issued directly by the CA)
and as the issuer of its units' CRL (RFC 5280 5.2.5: an indirect CRL, the units naming that issuer in their
CRL Distribution Point's cRLIssuer). The delegation lives as long as the agent CA, because nobody can renew it
once the agent is gone; it carries id-pkix-ocsp-nocheck, so what ends it is revoking the agent CA at the root.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from fabguard.pki.crl import REASONS, RevokedEntry, crl_builder
from fabguard.pki.ocsp import delegated_responder
from fabguard.pki.profiles import BACKDATE, Issuer, hash_for

UNIT_LABEL = "FabGuard revocation status"  # the status signer's OU (no unit subject has one)


def status_signer_name(agent_ca: x509.Certificate) -> x509.Name:
    """The status signer's subject: the agent CA's permitted prefix (``O=<org>, CN=<product>``, its name
    constraints) and an OU that no device subject has, naming the agent CA's lease."""
    constraints = agent_ca.extensions.get_extension_for_class(x509.NameConstraints).value
    prefix = next(n.value for n in constraints.permitted_subtrees or [] if isinstance(n, x509.DirectoryName))
    common = agent_ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    lease = str(common[0].value).rsplit(" ", 1)[-1] if common else "agent"
    unit = x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{UNIT_LABEL} {lease}"[:64])
    return x509.Name([*prefix.rdns, x509.RelativeDistinguishedName([unit])])


def status_signer_certificate(
    agent_ca: Issuer, public_key: CertificateIssuerPublicKeyTypes, now: datetime
) -> x509.Certificate:
    """The agent CA's delegation to the central server's ``public_key``: OCSP responses (digitalSignature,
    id-kp-OCSPSigning, id-pkix-ocsp-nocheck) and its units' indirect CRL (cRLSign), for the agent CA's life."""
    name = status_signer_name(agent_ca.certificate)
    until = agent_ca.certificate.not_valid_after_utc
    return delegated_responder(agent_ca, public_key, name, now - BACKDATE, until, crl_sign=True)


def status_signer_problem(
    cert: x509.Certificate, agent_ca: x509.Certificate, public_key: CertificateIssuerPublicKeyTypes
) -> str | None:
    """Why ``cert`` is not the agent CA's delegation to ``public_key`` (None if it is)."""
    try:
        cert.verify_directly_issued_by(agent_ca)
    except (ValueError, TypeError, InvalidSignature):
        return "it is not signed by the agent CA"
    if cert.public_key() != public_key:
        return "it certifies another key than the one the lease named"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as missing:
        return f"it lacks {missing.oid.dotted_string}"
    if (
        basic.ca
        or not usage.crl_sign
        or not usage.digital_signature
        or ExtendedKeyUsageOID.OCSP_SIGNING not in purposes
    ):
        return "it is not an OCSP responder and CRL issuer (CA:FALSE, digitalSignature, cRLSign, OCSPSigning)"
    if cert.subject != status_signer_name(agent_ca):
        return "its subject is not the status signer's"
    return None


def build_indirect_crl(
    signer: Issuer,
    certificate_issuer: x509.Name,
    crl_url: str,
    revoked: list[RevokedEntry],
    *,
    number: int,
    now: datetime,
    valid_for: timedelta,
    signer_url: str | None = None,
) -> x509.CertificateRevocationList:
    """The CRL of ``certificate_issuer``'s certificates signed by its status signer: an indirect CRL (RFC 5280
    5.2.5) whose distribution point is ``crl_url``, every entry naming its certificate's issuer (5.3.3), and
    where the signer's certificate is published (``signer_url``, Authority Information Access, 5.2.7)."""
    point = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(crl_url)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=True,
        only_contains_attribute_certs=False,
    )
    builder = crl_builder(signer.certificate, number=number, now=now, valid_for=valid_for).add_extension(
        point, critical=True
    )
    if signer_url is not None:
        where = x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(signer_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([where]), critical=False)
    issuer = x509.CertificateIssuer([x509.DirectoryName(certificate_issuer)])
    for entry in revoked:
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(entry.revoked_at)
            .add_extension(issuer, critical=True)
        )
        flag = REASONS.get(entry.reason)
        if flag is not None:
            item = item.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(signer.key, hash_for(signer.key))


__all__ = ["build_indirect_crl", "status_signer_certificate", "status_signer_name", "status_signer_problem"]
