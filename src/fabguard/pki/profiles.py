"""Certificate profiles: root and intermediate CAs, IEEE 802.1AR-style device IDevIDs, fixtures, TLS server.

Every builder takes validated values and returns a signed certificate; callers never assemble
extensions by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from fabguard.domain.values import Serial
from fabguard.pki.builder import Template, authority_key_id, certificate_builder
from fabguard.pki.keys import SigningKey

# IEEE 802.1AR: an IDevID is meant to live as long as the device; RFC 5280 4.1.2.5 names this date.
NO_WELL_DEFINED_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# Backdating absorbs clock skew between the server and the devices that check the certificate.
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA certificate with the key that signs for it."""

    certificate: x509.Certificate
    key: SigningKey


def hash_for(key: SigningKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _utc(t: datetime) -> datetime:
    """Times are UTC; a naive datetime is taken to be UTC already."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def signature_key_usage(*, crl_sign: bool = False) -> x509.KeyUsage:
    """digitalSignature alone (or with cRLSign: a delegated CRL issuer, ``pki.agent_status``)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def published(
    crl_url: str | None,
    ca_issuers_url: str | None,
    ocsp_url: str | None = None,
    crl_issuer: x509.Name | None = None,
) -> list[tuple[x509.ExtensionType, bool]]:
    """Name where the issuer's CRL is published (CRL Distribution Points, RFC 5280 4.2.1.13), where its
    certificate is (Authority Information Access caIssuers, 4.2.2.1: over HTTP, one DER certificate) and
    where its OCSP responder answers (Authority Information Access OCSP, RFC 6960 3.1). ``crl_issuer``: who
    signs that CRL when it is not the issuer (an indirect CRL, 4.2.1.13's cRLIssuer: a site agent's units).
    The extensions with their criticality, in the order a certificate carries them."""
    extensions: list[tuple[x509.ExtensionType, bool]] = []
    if crl_url is not None:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None if crl_issuer is None else [x509.DirectoryName(crl_issuer)],
        )
        extensions.append((x509.CRLDistributionPoints([point]), False))
    access = []
    if ocsp_url is not None:
        access.append(
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))
        )
    if ca_issuers_url is not None:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers_url)
            )
        )
    if access:
        extensions.append((x509.AuthorityInformationAccess(access), False))
    return extensions


def _published(
    builder: x509.CertificateBuilder,
    crl_url: str | None,
    ca_issuers_url: str | None,
    ocsp_url: str | None = None,
    crl_issuer: x509.Name | None = None,
) -> x509.CertificateBuilder:
    """``builder`` with the :func:`published` extensions added."""
    for extension, critical in published(crl_url, ca_issuers_url, ocsp_url, crl_issuer):
        builder = builder.add_extension(extension, critical=critical)
    return builder


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def self_signed_root(key: SigningKey, organization: str, common_name: str, now: datetime, years: int = 25) -> Issuer:
    start = _utc(now) - BACKDATE
    name = _name(organization, common_name)
    cert = certificate_builder(
        name,
        name,
        key.public_key(),
        start,
        start + timedelta(days=365 * years),
        constraints=x509.BasicConstraints(ca=True, path_length=None),
        key_usage=ca_key_usage(),
    ).sign(key, hash_for(key))
    return Issuer(cert, key)


def intermediate_ca(
    parent: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    organization: str,
    common_name: str,
    now: datetime,
    years: int = 15,
    crl_url: str | None = None,
    ca_issuers_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.Certificate:
    """An issuing or station CA below the root: may sign end-entity certificates only (pathLen 0)."""
    start = _utc(now) - BACKDATE
    end = min(start + timedelta(days=365 * years), parent.certificate.not_valid_after_utc)
    builder = certificate_builder(
        _name(organization, common_name),
        parent.certificate.subject,
        public_key,
        start,
        end,
        constraints=x509.BasicConstraints(ca=True, path_length=0),
        key_usage=ca_key_usage(),
        authority_key=authority_key_id(parent.certificate),
    )
    return _published(builder, crl_url, ca_issuers_url, ocsp_url).sign(parent.key, hash_for(parent.key))


def agent_issuing_ca(
    parent: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    organization: str,
    common_name: str,
    product_id: str,
    now: datetime,
    crl_url: str | None = None,
    ca_issuers_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.Certificate:
    """An offline site agent's issuing CA: pathLen 0 like any issuing CA, and name-constrained to the
    device subjects of one product (``O=organization, CN=product``, the prefix of every IDevID subject).
    Every DNS name and IP address is excluded too: a subject DN constraint alone leaves SANs free, so the
    agent's key could otherwise make a server certificate with an empty subject that chains to the root."""
    permitted = x509.DirectoryName(_name(organization, product_id))
    excluded: list[x509.GeneralName] = [
        x509.DNSName(""),  # RFC 5280 4.2.1.10: the empty name matches every DNS name
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    ]
    builder = certificate_builder(
        _name(organization, common_name),
        parent.certificate.subject,
        public_key,
        _utc(now) - BACKDATE,
        parent.certificate.not_valid_after_utc,
        constraints=x509.BasicConstraints(ca=True, path_length=0),
        key_usage=ca_key_usage(),
        extensions=[(x509.NameConstraints(permitted_subtrees=[permitted], excluded_subtrees=excluded), True)],
        authority_key=authority_key_id(parent.certificate),
    )
    return _published(builder, crl_url, ca_issuers_url, ocsp_url).sign(parent.key, hash_for(parent.key))


@dataclass(frozen=True, slots=True)
class IdevidProfile:
    """The IDevIDs one issuer signs for one product: what does not vary from unit to unit (the issuer's name,
    the subject's organization and product, the extensions but the subject key identifier) built once, so a
    writer signing a group of units builds only each unit's own part."""

    issuer: Issuer
    template: Template
    product: tuple[x509.RelativeDistinguishedName, ...]  # O=organization, CN=product
    lifetime: timedelta | None
    hash: hashes.SHA256 | None

    @classmethod
    def of(
        cls,
        issuer: Issuer,
        organization: str,
        product_id: str,
        lifetime: timedelta | None = None,
        crl_url: str | None = None,
        ca_issuers_url: str | None = None,
        ocsp_url: str | None = None,
        crl_issuer: x509.Name | None = None,
    ) -> IdevidProfile:
        template = Template.of(
            issuer.certificate.subject,
            constraints=x509.BasicConstraints(ca=False, path_length=None),
            key_usage=signature_key_usage(),
            authority_key=authority_key_id(issuer.certificate),
            after=published(crl_url, ca_issuers_url, ocsp_url, crl_issuer),
        )
        product = tuple(_name(organization, product_id).rdns)
        return cls(issuer, template, product, lifetime, hash_for(issuer.key))

    def certificate(
        self, public_key: CertificateIssuerPublicKeyTypes, serial: Serial, now: datetime, key_id: bytes | None = None
    ) -> x509.Certificate:
        """An IEEE 802.1AR-style device identity: the unit serial in the subject's serialNumber. ``key_id``: the
        key's subject key identifier, if the caller has it (``csr.CheckedCsr.key_id``)."""
        start = _utc(now) - BACKDATE
        end = NO_WELL_DEFINED_EXPIRY if self.lifetime is None else start + self.lifetime
        serial_rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial.value)])
        subject = x509.Name([*self.product, serial_rdn])
        return self.template.builder(subject, public_key, start, end, key_id).sign(self.issuer.key, self.hash)


def idevid_certificate(
    issuer: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    serial: Serial,
    organization: str,
    product_id: str,
    now: datetime,
    lifetime: timedelta | None = None,
    crl_url: str | None = None,
    ca_issuers_url: str | None = None,
    ocsp_url: str | None = None,
    crl_issuer: x509.Name | None = None,
) -> x509.Certificate:
    """An IEEE 802.1AR-style device identity: the unit serial in the subject's serialNumber (one certificate
    of :class:`IdevidProfile`)."""
    profile = IdevidProfile.of(
        issuer, organization, product_id, lifetime, crl_url, ca_issuers_url, ocsp_url, crl_issuer
    )
    return profile.certificate(public_key, serial, now)


def fixture_certificate(
    issuer: Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    organization: str,
    fixture_id: str,
    site_id: str,
    now: datetime,
    days: int = 730,
    crl_url: str | None = None,
    ca_issuers_url: str | None = None,
    ocsp_url: str | None = None,
) -> x509.Certificate:
    """A test-station client certificate (TLS client authentication only)."""
    start = _utc(now) - BACKDATE
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site_id),
            x509.NameAttribute(NameOID.COMMON_NAME, fixture_id),
        ]
    )
    builder = certificate_builder(
        subject,
        issuer.certificate.subject,
        public_key,
        start,
        start + timedelta(days=days),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=signature_key_usage(),
        extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        authority_key=authority_key_id(issuer.certificate),
    )
    return _published(builder, crl_url, ca_issuers_url, ocsp_url).sign(issuer.key, hash_for(issuer.key))


def server_certificate(
    issuer: Issuer,
    public_key: ec.EllipticCurvePublicKey,
    organization: str,
    hostnames: Sequence[str],
    now: datetime,
    days: int = 825,
) -> x509.Certificate:
    """The HTTPS server's certificate; names are DNS names or IP addresses."""
    start = _utc(now) - BACKDATE
    alt: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    return certificate_builder(
        _name(organization, hostnames[0]),
        issuer.certificate.subject,
        public_key,
        start,
        start + timedelta(days=days),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=signature_key_usage(),
        extensions=[
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName(alt), False),
        ],
        authority_key=authority_key_id(issuer.certificate),
    ).sign(issuer.key, hash_for(issuer.key))
