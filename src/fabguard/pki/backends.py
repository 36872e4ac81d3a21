"""Where CA private keys live: one small interface, with encrypted files as the default backend.

The PKCS#11 backend (``fabguard.pki.pkcs11``) implements the same interface with keys that never
leave the token.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.errors import ConfigurationError
from fabguard.pki.keys import new_signing_key, read_encrypted_key, write_encrypted_key

__all__ = ["FileKeyBackend", "KeyBackend", "KeyNotFound", "check_key_name"]

# Key names become file names and token labels: no path separators, no leading dot.
_KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyNotFound(ConfigurationError):
    """A backend holds no key of that name (a caller that may do without one tells this from a broken backend)."""


def check_key_name(name: str) -> str:
    """Refuse a key name that could escape a directory or confuse a token label."""
    if not isinstance(name, str) or not _KEY_NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"key name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@runtime_checkable
class KeyBackend(Protocol):
    """Makes and finds the P-256 signing keys of an instance's CAs."""

    def generate(self, name: str) -> ec.EllipticCurvePrivateKey:
        """Make a new P-256 key called ``name``; refuse if one exists."""
        ...

    def load(self, name: str) -> ec.EllipticCurvePrivateKey:
        """The key called ``name``, ready to sign; ConfigurationError if there is none."""
        ...

    def exists(self, name: str) -> bool: ...

    def describe(self) -> str:
        """Where the keys live, for people (never a secret)."""
        ...


class FileKeyBackend:
    """Keys as passphrase-encrypted PKCS#8 PEM files, ``<directory>/<name>.key.pem``, mode 0600."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        self.directory = directory
        self._passphrase = passphrase

    def __repr__(self) -> str:
        return f"FileKeyBackend({str(self.directory)!r})"

    def path(self, name: str) -> Path:
        return self.directory / f"{check_key_name(name)}.key.pem"

    def generate(self, name: str) -> ec.EllipticCurvePrivateKey:
        path = self.path(name)
        if path.exists():
            raise ConfigurationError(f"a key named {name} already exists in {self.directory}")
        key = new_signing_key()
        write_encrypted_key(key, path, self._passphrase)
        return key

    def load(self, name: str) -> ec.EllipticCurvePrivateKey:
        path = self.path(name)
        if not path.exists():
            raise ConfigurationError(f"no key '{name}' in {self.directory}")
        key = read_encrypted_key(path, self._passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{path.name} holds an Ed25519 key, not the EC key a CA signs with")
        return key

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def describe(self) -> str:
        return f"encrypted PKCS#8 files in {self.directory}"
