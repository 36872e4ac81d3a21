"""An operator's own CA for the tests of the HTTPS listener's certificate, and a ``fabguard serve`` process to
point it at: real keys and certificates (``cryptography``), a real server in a subprocess."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FABGUARD = (sys.executable, "-m", "fabguard.cli.main")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*FABGUARD, "--home", str(home), *args],
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) is ok, (args, done.stdout, done.stderr)
    return done


def init_instance(home: Path, port: int, *extra: str) -> str:
    """``fabguard init`` for a server on 127.0.0.1:``port``; the admin token."""
    done = cli(home, "init", "--org", "Acme Devices", "--public-url", f"https://127.0.0.1:{port}", *extra)
    [admin] = re.findall(r"fgt_[A-Za-z0-9_\-]+", done.stdout)
    return admin


def serve(home: Path, log: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*FABGUARD, "--home", str(home), "serve", "--log-level", "info", "--log-format", "text", "--port", str(port), *args],
            env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_healthy(url: str, trust: Path, server: subprocess.Popen[bytes]) -> None:
    verify = ssl.create_default_context(cafile=str(trust))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/api/v1/health", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start")


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
