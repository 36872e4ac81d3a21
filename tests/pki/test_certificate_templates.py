"""A device profile built once and signing many (``IdevidProfile``, ``DacProfile``, on ``builder.Template``) makes
the certificates the profile made one at a time through ``certificate_builder``: the TBS certificate byte for
byte but its random serial number, for IDevIDs with and without a lifetime, publication points and an indirect
CRL issuer, under ECDSA and Ed25519 issuers, for P-256, P-384 and Ed25519 device keys, and for Matter DACs with
and without an expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import NameOID

from fabguard.domain.values import Serial
from fabguard.pki import profiles
from fabguard.pki.builder import authority_key_id, certificate_builder, certificate_pem
from fabguard.pki.keys import key_identifiers, new_signing_key, spki_fingerprint
from fabguard.pki.matter import DacProfile, ProductId, VendorId, attestation_subject, paa_certificate, pai_certificate

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
ORG = "Acme Devices"


def _old_idevid(
    issuer: profiles.Issuer,
    public_key: CertificateIssuerPublicKeyTypes,
    serial: Serial,
    product_id: str,
    lifetime: timedelta | None,
    urls: dict[str, str | None],
    crl_issuer: x509.Name | None,
) -> x509.Certificate:
    """``profiles.idevid_certificate`` as it was before the profiles were built once (session 10)."""
    start = NOW - profiles.BACKDATE
    end = profiles.NO_WELL_DEFINED_EXPIRY if lifetime is None else start + lifetime
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, product_id),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial.value),
        ]
    )
    builder = certificate_builder(
        subject,
        issuer.certificate.subject,
        public_key,
        start,
        end,
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=profiles.signature_key_usage(),
        authority_key=authority_key_id(issuer.certificate),
    )
    builder = profiles._published(builder, urls["crl"], urls["ca_issuers"], urls["ocsp"], crl_issuer)
    return builder.sign(issuer.key, profiles.hash_for(issuer.key))


def _old_dac(
    pai: profiles.Issuer, public_key: ec.EllipticCurvePublicKey, cn: str, not_after: datetime | None
) -> x509.Certificate:
    """``matter.dac_certificate`` as it was (its checks aside, which the new one keeps)."""
    start = NOW - profiles.BACKDATE
    return certificate_builder(
        attestation_subject(cn, VendorId(0xFFF1), ProductId(0x8000)),
        pai.certificate.subject,
        public_key,
        start,
        profiles.NO_WELL_DEFINED_EXPIRY if not_after is None else not_after,
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        key_usage=profiles.signature_key_usage(),
        authority_key=authority_key_id(pai.certificate),
    ).sign(pai.key, hashes.SHA256())


def _tbs_without_serial(cert: x509.Certificate) -> bytes:
    """The TBS certificate's content after its serial number (RFC 5280 4.1: version [0], serialNumber, ...)."""
    tbs = cert.tbs_certificate_bytes
    assert tbs[0] == 0x30
    at = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    assert tbs[at : at + 5] == bytes.fromhex("a003020102")  # v3
    at += 5
    assert tbs[at] == 0x02 and tbs[at + 1] < 0x80  # a serial of at most 20 octets
    return tbs[at + 2 + tbs[at + 1] :]


def _same(new: x509.Certificate, old: x509.Certificate) -> None:
    assert _tbs_without_serial(new) == _tbs_without_serial(old)
    assert new.serial_number != old.serial_number  # random each time, as before
    assert new.signature_algorithm_oid == old.signature_algorithm_oid


def _issuer(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> profiles.Issuer:
    root = profiles.self_signed_root(new_signing_key(), ORG, "Root", NOW)
    return profiles.Issuer(profiles.intermediate_ca(root, key.public_key(), ORG, "Issuing", NOW), key)


ISSUERS: dict[str, Callable[[], ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}
DEVICE_KEYS: dict[str, Callable[[], CertificateIssuerPublicKeyTypes]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
    "ed25519": lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
}
URLS: dict[str, dict[str, str | None]] = {
    "none": {"crl": None, "ca_issuers": None, "ocsp": None},
    "crl": {"crl": "http://pki.example/crl/issuing.crl", "ca_issuers": None, "ocsp": None},
    "all": {
        "crl": "http://pki.example/crl/issuing.crl",
        "ca_issuers": "http://pki.example/ca/issuing.der",
        "ocsp": "http://pki.example/ocsp/issuing",
    },
}


@pytest.mark.parametrize("issuer_key", sorted(ISSUERS))
@pytest.mark.parametrize("device_key", sorted(DEVICE_KEYS))
@pytest.mark.parametrize("published", sorted(URLS))
@pytest.mark.parametrize("lifetime", [None, timedelta(days=3650)])
def test_an_idevid_profile_signs_what_the_builder_signed(
    issuer_key: str, device_key: str, published: str, lifetime: timedelta | None
) -> None:
    issuer = _issuer(ISSUERS[issuer_key]())
    urls = URLS[published]
    profile = profiles.IdevidProfile.of(issuer, ORG, "sensor", lifetime, urls["crl"], urls["ca_issuers"], urls["ocsp"])
    for serial in (Serial("SN-0001"), Serial("SN-0002")):  # one profile, many units
        public_key = DEVICE_KEYS[device_key]()
        old = _old_idevid(issuer, public_key, serial, "sensor", lifetime, urls, None)
        _same(profile.certificate(public_key, serial, NOW), old)
        _same(profile.certificate(public_key, serial, NOW, key_identifiers(public_key)[1]), old)  # the CSR's
        one = profiles.idevid_certificate(
            issuer, public_key, serial, ORG, "sensor", NOW, lifetime, urls["crl"], urls["ca_issuers"], urls["ocsp"]
        )
        _same(one, old)


def test_an_indirect_crl_issuer_is_named_as_the_builder_named_it() -> None:
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()))
    agent = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Site agent status signer")])
    urls = URLS["all"]
    profile = profiles.IdevidProfile.of(
        issuer, ORG, "sensor", None, urls["crl"], urls["ca_issuers"], urls["ocsp"], agent
    )
    public_key = DEVICE_KEYS["p256"]()
    new = profile.certificate(public_key, Serial("SN-9"), NOW)
    _same(new, _old_idevid(issuer, public_key, Serial("SN-9"), "sensor", None, urls, agent))


@pytest.mark.parametrize("expiry", [None, NOW + timedelta(days=365)])
def test_a_dac_profile_signs_what_the_builder_signed(expiry: datetime | None) -> None:
    paa = paa_certificate(new_signing_key(), "Test PAA", NOW - timedelta(days=1), VendorId(0xFFF1))
    pai_key = new_signing_key()
    pai = profiles.Issuer(
        pai_certificate(
            paa, pai_key.public_key(), "Test PAI", VendorId(0xFFF1), ProductId(0x8000), NOW - timedelta(days=1)
        ),
        pai_key,
    )
    profile = DacProfile.of(pai)
    for cn in ("SN-M1", "SN-M2"):
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        new = profile.certificate(public_key, cn, VendorId(0xFFF1), ProductId(0x8000), NOW, expiry)
        _same(new, _old_dac(pai, public_key, cn, expiry))
        key_id = key_identifiers(public_key)[1]
        again = profile.certificate(public_key, cn, VendorId(0xFFF1), ProductId(0x8000), NOW, expiry, key_id)
        _same(again, _old_dac(pai, public_key, cn, expiry))


def test_the_pem_made_from_the_der_is_the_pem_cryptography_writes() -> None:
    issuer = _issuer(ec.generate_private_key(ec.SECP256R1()))
    profile = profiles.IdevidProfile.of(issuer, ORG, "a-product-with-a-rather-long-name")
    cert = profile.certificate(DEVICE_KEYS["p384"](), Serial("SN-" + "7" * 60), NOW)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificate_pem(der) == cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
        lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
        lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
        lambda: rsa.generate_private_key(65537, 2048).public_key(),  # lengths in the long form
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_key_identifiers_are_the_fingerprint_and_the_key_identifier_cryptography_computes(
    make: Callable[[], CertificateIssuerPublicKeyTypes],
) -> None:
    public_key = make()
    fingerprint, key_id = key_identifiers(public_key)
    assert fingerprint == spki_fingerprint(public_key)
    assert key_id == x509.SubjectKeyIdentifier.from_public_key(public_key).digest
