"""An offline site agent's issuing CA (issue 18): openssl, the peer oracle, accepts the product's device
certificates under it and refuses what the agent's key must not make: another product's subject, or a
server certificate that hides behind an empty subject and a DNS or IP name."""

from __future__ import annotations

import ipaddress
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fabguard.domain.values import Serial
from fabguard.pki import profiles

ORG, PRODUCT = "Acme Devices", "sensor"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, profiles.Issuer]:
    """root.pem and agent.pem in a folder, and the agent CA as an issuer (its key is the agent's)."""
    where = tmp_path_factory.mktemp("agent-ca")
    root = profiles.self_signed_root(ec.generate_private_key(ec.SECP256R1()), ORG, "Acme Root CA", NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    agent = profiles.agent_issuing_ca(root, key.public_key(), ORG, "Acme Site Agent CA", PRODUCT, NOW)
    for name, cert in (("root", root.certificate), ("agent", agent)):
        (where / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return where, profiles.Issuer(agent, key)


def _verify(where: Path, cert: x509.Certificate) -> subprocess.CompletedProcess[str]:
    leaf = where / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", where / "root.pem", "-untrusted", where / "agent.pem", leaf],
        capture_output=True,
        text=True,
        check=False,
    )


def _rogue(agent: profiles.Issuer, subject: x509.Name, san: list[x509.GeneralName]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(agent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(agent.key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=not list(subject))
    assert isinstance(agent.key, ec.EllipticCurvePrivateKey)
    return builder.sign(agent.key, hashes.SHA256())


def test_a_device_certificate_of_the_product_verifies_under_the_agent_ca(chain: tuple[Path, profiles.Issuer]) -> None:
    where, agent = chain
    device = profiles.idevid_certificate(
        agent, ec.generate_private_key(ec.SECP256R1()).public_key(), Serial("SN-A1"), ORG, PRODUCT, NOW
    )
    done = _verify(where, device)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("subject", "san"),
    [
        (
            x509.Name(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG), x509.NameAttribute(NameOID.COMMON_NAME, "tag")]
            ),
            [],
        ),
        (x509.Name([]), [x509.DNSName("fabguard.oem.example")]),
        (x509.Name([]), [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        (x509.Name([]), [x509.IPAddress(ipaddress.ip_address("::1"))]),
    ],
    ids=["another product", "a DNS name", "an IPv4 address", "an IPv6 address"],
)
def test_what_the_agent_key_must_not_make_does_not_verify(
    chain: tuple[Path, profiles.Issuer], subject: x509.Name, san: list[x509.GeneralName]
) -> None:
    where, agent = chain
    done = _verify(where, _rogue(agent, subject, san))
    assert done.returncode != 0 and "subtree violation" in done.stdout + done.stderr, done.stdout + done.stderr
