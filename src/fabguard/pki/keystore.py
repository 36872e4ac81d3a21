"""An instance's private keys, found by reference: ``file:<name>`` or ``pkcs11:<label>``.

``file:<name>`` is passphrase-encrypted PKCS#8 in the keys directory (``fabguard.pki.keys``);
``pkcs11:<label>`` is a non-extractable key in an HSM token (``fabguard.pki.pkcs11``). The passphrase
and the PIN come from the environment given, never from an argument. Keys are decrypted (or looked up
in the token) on first use and then held in memory only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import ConfigurationError
from fabguard.pki.keys import (
    SigningKey,
    new_signing_key,
    passphrase_from_env,
    pin_from_env,
    read_encrypted_key,
    write_encrypted_key,
)

if TYPE_CHECKING:
    from fabguard.pki.pkcs11 import Pkcs11KeyBackend

__all__ = ["KEY_BACKENDS", "KeyStore"]

KEY_BACKENDS = ("file", "pkcs11")


class KeyStore:
    """The keys of one instance. New CA keys go to ``backend``; references name where each key lives."""

    def __init__(
        self,
        directory: Path,
        *,
        backend: str = "file",
        pkcs11_module: str | None = None,
        pkcs11_token: str | None = None,
        label_prefix: str = "fabguard",
        env: Mapping[str, str] | None = None,
    ) -> None:
        if backend not in KEY_BACKENDS:
            raise ConfigurationError(f"unknown key backend {backend!r}: file or pkcs11")
        self.directory = directory
        self.backend = backend
        self._module = pkcs11_module
        self._token = pkcs11_token
        self._prefix = label_prefix
        self._env = os.environ if env is None else env
        self._keys: dict[str, SigningKey] = {}
        self._secrets: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._hsm_backend: Pkcs11KeyBackend | None = None
        self._hsm_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r}, backend={self.backend!r})"

    def path(self, name: str) -> Path:
        """The encrypted file of the file-backed key ``name``."""
        return self.directory / f"{name}.key.pem"

    def label(self, name: str) -> str:
        """The token label of the HSM key ``name``: prefixed, so several instances can share one token."""
        return f"{self._prefix}-{name}"

    def passphrase(self) -> bytes:
        """The key passphrase from the environment (never stored, never logged)."""
        return passphrase_from_env(self._env)

    def ref_for(self, name: str) -> str:
        """The reference of the CA key ``name`` in this store's backend."""
        if self.backend == "pkcs11":
            return f"pkcs11:{self.label(name)}"
        return f"file:{name}"

    def load(self, key_ref: str) -> SigningKey:
        """The key a reference names: ``file:<name>`` (encrypted PKCS#8) or ``pkcs11:<label>`` (HSM)."""
        with self._lock:
            if key_ref not in self._keys:
                backend, _, name = key_ref.partition(":")
                if backend == "file":
                    self._keys[key_ref] = read_encrypted_key(self.path(name), self.passphrase())
                elif backend == "pkcs11":
                    self._keys[key_ref] = self._hsm().load(name)
                else:
                    raise ConfigurationError(f"unknown key reference {key_ref!r}")
            return self._keys[key_ref]

    def generate(self, name: str) -> str:
        """Make a new CA key ``name`` (an encrypted file, or non-extractable in the HSM); returns its reference."""
        if self.backend == "pkcs11":
            self._hsm().generate(self.label(name))
            return self.ref_for(name)
        path = self.path(name)
        if path.exists():
            raise ConfigurationError(f"a key named {name} already exists")
        write_encrypted_key(new_signing_key(), path, self.passphrase())
        return self.ref_for(name)

    def secret(self, name: str) -> bytes:
        """The instance's 32-byte symmetric secret ``name`` (a MAC key), made on first use, the same for
        every process of the instance: an Ed25519 key in the keys directory, encrypted with the passphrase
        like the file-backed keys (also on an HSM instance: the token holds signing keys, not secrets);
        the secret is SHA-256 over a label, ``name`` and its private bytes. Held in memory once read."""
        with self._lock:
            if name not in self._secrets:
                path = self.path(name)
                if not path.exists():
                    _create_once(path, ed25519.Ed25519PrivateKey.generate(), self.passphrase())
                key = read_encrypted_key(path, self.passphrase())
                if not isinstance(key, ed25519.Ed25519PrivateKey):
                    raise ConfigurationError(f"{path.name} holds no secret (not an Ed25519 key)")
                raw = key.private_bytes(
                    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
                )
                self._secrets[name] = hashlib.sha256(b"FabGuard secret v1\x00" + name.encode() + raw).digest()
            return self._secrets[name]

    def destroy(self, key_ref: str) -> None:
        """Delete the key a reference names, for good (a retired OCSP responder's, say); nothing if it is gone."""
        backend, _, name = key_ref.partition(":")
        with self._lock:
            self._keys.pop(key_ref, None)
        if backend == "file":
            self.path(name).unlink(missing_ok=True)
        elif backend == "pkcs11":
            self._hsm().destroy(name)
        else:
            raise ConfigurationError(f"unknown key reference {key_ref!r}")

    def close(self) -> None:
        """Close the HSM session, if one was opened; cached keys are dropped."""
        with self._hsm_lock:
            backend, self._hsm_backend = self._hsm_backend, None
        with self._lock:
            self._keys.clear()
            self._secrets.clear()
        if backend is not None:
            backend.close()

    def _hsm(self) -> Pkcs11KeyBackend:
        # Imported here, not at the top: python-pkcs11 is an optional dependency (the "hsm" extra),
        # needed only by instances whose keys are in an HSM.
        from fabguard.pki.pkcs11 import Pkcs11KeyBackend

        with self._hsm_lock:
            if self._hsm_backend is None:
                if not self._module or not self._token:
                    raise ConfigurationError("this instance has no PKCS#11 module and token configured")
                self._hsm_backend = Pkcs11KeyBackend(self._module, self._token, pin_from_env(self._env))
            return self._hsm_backend


def _create_once(path: Path, key: ed25519.Ed25519PrivateKey, passphrase: bytes) -> None:
    """Write ``key`` to ``path`` unless a file is there; of several processes racing, the first link wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    write_encrypted_key(key, tmp, passphrase)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: theirs is the secret
    finally:
        tmp.unlink()
