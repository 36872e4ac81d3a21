"""The HTTPS listener's own certificate as an operator supplies it: a PEM chain (leaf first) and its key.

Pure: bytes in, a checked value or an error out. ``service.core.server_tls`` reads the files and
``api.server_tls`` loads them into the listener's TLS context.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fabguard.domain.errors import InvalidRequest

UNREADABLE = "server_tls_unreadable"
MISMATCH = "certificate_key_mismatch"
BROKEN_CHAIN = "certificate_invalid"


@dataclass(frozen=True)
class ServerCredentials:
    """A checked certificate chain (leaf first) whose leaf matches the key."""

    chain: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def names(self) -> frozenset[str]:
        """The DNS names and IP addresses the leaf's subjectAltName holds (what clients check)."""
        try:
            san = self.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return frozenset()
        dns = {str(n).lower() for n in san.get_values_for_type(x509.DNSName)}
        return frozenset(dns | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)})

    def covers(self, host: str) -> bool:
        """Whether a client connecting to ``host`` accepts the leaf's names (RFC 6125: one left-most wildcard
        label for DNS names, never for IP addresses)."""
        host = host.strip("[]").lower()
        try:
            return str(ipaddress.ip_address(host)) in self.names
        except ValueError:
            pass
        if host in self.names:
            return True
        first, _, rest = host.partition(".")
        return bool(first and rest) and f"*.{rest}" in self.names

    def describe(self) -> str:
        leaf = self.leaf
        return (
            f"serial {leaf.serial_number:x}, subject {leaf.subject.rfc4514_string()}, "
            f"issuer {leaf.issuer.rfc4514_string()}, valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )

    def valid_at(self, now: datetime) -> bool:
        return self.leaf.not_valid_before_utc <= now <= self.leaf.not_valid_after_utc


def parse_chain(pem: bytes, where: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM file, in order; at least one."""
    try:
        chain = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError:
        raise InvalidRequest(f"{where} holds no readable PEM certificate", code=UNREADABLE) from None
    return chain


def parse_key(pem: bytes, passphrase: bytes | None, where: str) -> PrivateKeyTypes:
    """The private key of a PEM file (PKCS#8 or traditional), opened with ``passphrase`` if encrypted."""
    encrypted = b"ENCRYPTED" in pem
    if encrypted and passphrase is None:
        raise InvalidRequest(
            f"{where} is encrypted: name the file holding its passphrase (--key-passphrase-file)", code=UNREADABLE
        )
    try:
        return serialization.load_pem_private_key(pem, password=passphrase if encrypted else None)
    except (ValueError, TypeError):
        what = "cannot be opened with the passphrase given" if encrypted else "holds no readable PEM private key"
        raise InvalidRequest(f"{where} {what}", code=UNREADABLE) from None


def check_credentials(chain: tuple[x509.Certificate, ...], key: PrivateKeyTypes, where: str) -> ServerCredentials:
    """The chain and key as a server can use them: the leaf is the key's, and the chain is in order."""
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        raise InvalidRequest(
            f"the certificate in {where} (serial {leaf.serial_number:x}) does not match its key: "
            "the key file holds another key",
            code=MISMATCH,
        )
    return check_chain(chain, where)


def check_chain(chain: tuple[x509.Certificate, ...], where: str) -> ServerCredentials:
    """The chain as a server can send it: each certificate signed by the next one (the last may be a root or
    an intermediate; clients bring their own trust anchor)."""
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise InvalidRequest(
                f"{where}: {child.subject.rfc4514_string()} is not signed by the certificate after it "
                f"({parent.subject.rfc4514_string()}); the file must hold the server's certificate first, "
                "then each CA certificate that signed the one before",
                code=BROKEN_CHAIN,
            ) from None
    return ServerCredentials(chain)


def trust_anchors(chain: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
    """The self-signed certificates of a chain (a root the operator put at its end), if any."""
    return tuple(c for c in chain[1:] if c.subject == c.issuer)
