"""The OCSP responder's pure core: the CertID hashes agree with cryptography's own request builder, what is
not a request is refused as malformed, and a response says what it was told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp as x509_ocsp

from fabguard.domain.errors import InvalidRequest
from fabguard.pki import ocsp, profiles

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ca(key: profiles.SigningKey) -> profiles.Issuer:
    return profiles.self_signed_root(key, "Acme", "Acme Root", NOW)


def request(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm, nonce: bytes = b""
) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()])
@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256(), hashes.SHA384()])
def test_a_request_built_by_cryptography_names_its_ca(
    key: profiles.SigningKey, algorithm: hashes.HashAlgorithm
) -> None:
    root = ca(key)
    query = ocsp.parse_request(request(root.certificate, root.certificate, algorithm, nonce=b"n1"))
    assert ocsp.names(query, root.certificate)
    assert not ocsp.names(query, ca(ec.generate_private_key(ec.SECP256R1())).certificate)
    assert (query.serial_number, query.nonce) == (root.certificate.serial_number, b"n1")


@pytest.mark.parametrize("der", [b"", b"\x30\x00", b"junk", b"\x30\x82\xff\xff"])
def test_what_is_not_a_request_is_malformed(der: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ocsp.parse_request(der)
    assert refused.value.code == "ocsp_request_malformed"


def test_a_nonce_longer_than_32_bytes_is_malformed() -> None:
    root = ca(ec.generate_private_key(ec.SECP256R1()))
    assert ocsp.parse_request(request(root.certificate, root.certificate, hashes.SHA1(), b"n" * 32)).nonce
    with pytest.raises(InvalidRequest):
        ocsp.parse_request(request(root.certificate, root.certificate, hashes.SHA1(), b"n" * 33))


def test_a_response_says_revoked_with_reason_and_time_signed_by_the_responder() -> None:
    root = ca(ec.generate_private_key(ec.SECP256R1()))
    key = ec.generate_private_key(ec.SECP256R1())
    delegate = profiles.Issuer(ocsp.responder_certificate(root, key.public_key(), NOW, timedelta(days=7)), key)
    query = ocsp.parse_request(request(root.certificate, root.certificate, hashes.SHA256(), b"nonce"))
    revoked_at = NOW - timedelta(hours=2)
    response = ocsp.build_response(
        query, ocsp.revoked(revoked_at, "key_compromise"), delegate, now=NOW, valid_for=timedelta(hours=1)
    )
    assert response.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert (response.revocation_time_utc, response.revocation_reason) == (revoked_at, x509.ReasonFlags.key_compromise)
    assert response.next_update_utc == NOW + timedelta(hours=1)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"nonce"
    assert response.certificates == [delegate.certificate]
    delegate.certificate.verify_directly_issued_by(root.certificate)
    key.public_key().verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


def test_a_response_never_outlives_its_responder() -> None:
    root = ca(ec.generate_private_key(ec.SECP256R1()))
    key = ec.generate_private_key(ec.SECP256R1())
    delegate = profiles.Issuer(ocsp.responder_certificate(root, key.public_key(), NOW, timedelta(minutes=30)), key)
    query = ocsp.parse_request(request(root.certificate, root.certificate, hashes.SHA1()))
    response = ocsp.build_response(query, ocsp.GOOD, delegate, now=NOW, valid_for=timedelta(hours=1))
    assert response.next_update_utc == delegate.certificate.not_valid_after_utc
