"""An operator's own CA for the tests of the HTTPS listener's certificate (real keys and certificates from
``cryptography``), and what a new TLS connection to a server is given; the server itself runs in a subprocess
(``tests/served.py``)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Operator IT"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class OperatorCA:
    """A root CA and an intermediate, as an operator's IT department would have them."""

    directory: Path
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    issuing_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC) - timedelta(minutes=5)
        ca = x509.BasicConstraints(ca=True, path_length=None)
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        self.root = (
            x509.CertificateBuilder().subject_name(_name("Operator Root CA")).issuer_name(_name("Operator Root CA"))
            .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=3650))
            .add_extension(ca, critical=True).add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )  # fmt: skip
        self.issuing = (
            x509.CertificateBuilder().subject_name(_name("Operator Issuing CA")).issuer_name(self.root.subject)
            .public_key(self.issuing_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.issuing_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )  # fmt: skip
        self.root_file.write_bytes(self.root.public_bytes(PEM))

    @property
    def root_file(self) -> Path:
        return self.directory / "operator-root.pem"

    def server_certificate(
        self,
        name: str,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        passphrase: str | None = None,
        days: int = 90,
        with_root: bool = False,
    ) -> tuple[Path, Path, x509.Certificate]:
        """A TLS server certificate for ``hosts`` under the intermediate: ``name``.pem (leaf, intermediate[, root])
        and ``name``.key (encrypted with ``passphrase`` if given)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert_file, leaf = self.certificate_for(key.public_key(), name, hosts=hosts, days=days, with_root=with_root)
        key_file = self.directory / f"{name}.key"
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
        )
        key_file.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, encryption))
        key_file.chmod(0o600)
        return cert_file, key_file, leaf

    def certificate_for(
        self,
        public_key: ec.EllipticCurvePublicKey,
        name: str,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        days: int = 90,
        with_root: bool = False,
    ) -> tuple[Path, x509.Certificate]:
        """A TLS server certificate for ``public_key`` (wherever its private key is): ``name``.pem, the chain."""
        now = datetime.now(UTC) - timedelta(minutes=5)
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        leaf = (
            x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(self.issuing.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuing_key.public_key()), critical=False)
            .sign(self.issuing_key, hashes.SHA256())
        )  # fmt: skip
        chain = [leaf, self.issuing] + ([self.root] if with_root else [])
        cert_file = self.directory / f"{name}.pem"
        cert_file.write_bytes(b"".join(c.public_bytes(PEM) for c in chain))
        return cert_file, leaf


def served_serial(port: int, trust: Path | None = None) -> int:
    """The serial of the certificate a new TLS connection to 127.0.0.1:``port`` is given (verified against
    ``trust`` if given)."""
    ctx = ssl.create_default_context(cafile=str(trust)) if trust else ssl._create_unverified_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number
