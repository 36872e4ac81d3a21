"""The field check's edge reads the device certificate once: what cryptography would only fail on later
(an unknown key algorithm) is refused there with field_chain_invalid, never a server error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabguard.domain.errors import InvalidRequest
from fabguard.pki.field import parse_chain

# id-ecPublicKey (1.2.840.10045.2.1) as DER, and the same arc ending in 9: no algorithm cryptography knows.
EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
UNKNOWN_ALGORITHM = bytes.fromhex("06072a8648ce3d0209")


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "device"), x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-1")]
    )
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_a_readable_certificate_is_the_leaf() -> None:
    cert = _certificate()
    assert parse_chain(cert.public_bytes(serialization.Encoding.PEM).decode()) == cert


def test_a_certificate_whose_key_algorithm_is_unknown_is_refused_at_the_edge() -> None:
    der = _certificate().public_bytes(serialization.Encoding.DER)
    assert der.count(EC_PUBLIC_KEY) == 1
    odd = x509.load_der_x509_certificate(der.replace(EC_PUBLIC_KEY, UNKNOWN_ALGORITHM))
    pem = odd.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(InvalidRequest) as exc:
        parse_chain(pem)
    assert exc.value.code == "field_chain_invalid"
