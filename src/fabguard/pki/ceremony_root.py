"""The offline root as the air-gapped ceremony machine keeps it: a directory with the root's certificate,
its state, and (for the file backend only) its key as passphrase-encrypted PKCS#8.

``ceremony.json`` says where the key lives (``file``: ``root.key.pem`` beside it, passphrase from
``FABGUARD_KEY_PASSPHRASE[_FILE]``; ``pkcs11``: a non-extractable key in an HSM token, PIN from
``FABGUARD_PKCS11_PIN[_FILE]``) and the last CRL number the root signed, so numbers only grow. Nothing
in this directory goes to the server: only the bundles ``pki.ceremony`` writes cross the air gap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import ConfigurationError
from fabguard.pki import matter, profiles
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

STATE = "ceremony.json"
ROOT_FORMAT = "fabguard-ceremony-root/1"
ROOT_CERT = "root.pem"
ROOT_KEY = "root.key.pem"


@dataclass(frozen=True, slots=True)
class RootState:
    organization: str
    key_backend: str
    pkcs11_module: str | None
    pkcs11_token: str | None
    key_label: str
    last_crl_number: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": ROOT_FORMAT,
                "organization": self.organization,
                "key_backend": self.key_backend,
                "pkcs11_module": self.pkcs11_module,
                "pkcs11_token": self.pkcs11_token,
                "key_label": self.key_label,
                "last_crl_number": self.last_crl_number,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RootState:
        if data.get("format") != ROOT_FORMAT:
            raise ConfigurationError(f"{STATE} is not a {ROOT_FORMAT} file")
        return cls(
            str(data["organization"]),
            str(data["key_backend"]),
            data.get("pkcs11_module"),
            data.get("pkcs11_token"),
            str(data["key_label"]),
            int(data["last_crl_number"]),
        )


def _write_state(directory: Path, state: RootState) -> None:
    tmp = directory / f"{STATE}.tmp"
    tmp.write_text(state.to_json())
    os.replace(tmp, directory / STATE)


def create_root(
    directory: Path,
    *,
    organization: str,
    common_name: str,
    now: datetime,
    key_backend: str = "file",
    pkcs11_module: str | None = None,
    pkcs11_token: str | None = None,
    key_label: str = "fabguard-offline-root",
    years: int = 25,
    env: Mapping[str, str] | None = None,
    matter_vid: int | None = None,
) -> x509.Certificate:
    """Make the root key (an encrypted file, or inside the HSM) and its self-signed certificate: FabGuard's
    root, or with ``matter_vid`` the vendor's Matter PAA (P-256, pathLen 1, the VID in its subject)."""
    if (directory / STATE).exists():
        raise ConfigurationError(f"{directory} already holds a root")
    if key_backend not in ("file", "pkcs11"):
        raise ConfigurationError(f"unknown key backend {key_backend!r}: file or pkcs11")
    if key_backend == "pkcs11" and not (pkcs11_module and pkcs11_token):
        raise ConfigurationError("a root in an HSM needs --pkcs11-module and --pkcs11-token")
    state = RootState(organization, key_backend, pkcs11_module, pkcs11_token, key_label, 0)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    vendor = matter.VendorId(matter_vid) if matter_vid is not None else None

    def certificate(key: SigningKey) -> x509.Certificate:
        if vendor is not None:
            return matter.paa_certificate(key, common_name, now, vendor, years).certificate
        return profiles.self_signed_root(key, organization, common_name, now, years).certificate

    if key_backend == "file":
        key: SigningKey = new_signing_key()
        write_encrypted_key(key, directory / ROOT_KEY, passphrase_from_env(env))
        cert = certificate(key)
    else:
        with _hsm(state, env) as hsm:
            cert = certificate(hsm.generate(key_label))
    (directory / ROOT_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_state(directory, state)
    return cert


@dataclass(frozen=True, slots=True)
class OpenedRoot:
    directory: Path
    state: RootState
    issuer: profiles.Issuer

    def next_crl_number(self, asked: int) -> int:
        """A number above every one this root signed and at least the one the instance asks for."""
        return max(self.state.last_crl_number + 1, asked)

    def record_crl_number(self, number: int) -> None:
        state = RootState(
            self.state.organization,
            self.state.key_backend,
            self.state.pkcs11_module,
            self.state.pkcs11_token,
            self.state.key_label,
            number,
        )
        _write_state(self.directory, state)


@contextmanager
def opened_root(directory: Path, env: Mapping[str, str] | None = None) -> Iterator[OpenedRoot]:
    """The root of a ceremony directory with its key unlocked (the HSM session closed afterwards)."""
    try:
        state = RootState.from_json(json.loads((directory / STATE).read_text()))
        cert = x509.load_pem_x509_certificate((directory / ROOT_CERT).read_bytes())
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{directory} holds no ceremony root ({type(exc).__name__})") from None
    if state.key_backend == "file":
        key = read_encrypted_key(directory / ROOT_KEY, passphrase_from_env(env))
        yield _checked(directory, state, cert, key)
        return
    with _hsm(state, env) as hsm:
        yield _checked(directory, state, cert, hsm.load(state.key_label))


def _checked(directory: Path, state: RootState, cert: x509.Certificate, key: SigningKey) -> OpenedRoot:
    if key.public_key() != cert.public_key():
        raise ConfigurationError(f"the root key does not match {directory / ROOT_CERT}")
    return OpenedRoot(directory, state, profiles.Issuer(cert, key))


@contextmanager
def _hsm(state: RootState, env: Mapping[str, str] | None) -> Iterator[Pkcs11KeyBackend]:
    # Imported here: python-pkcs11 is an optional dependency (the "hsm" extra).
    from fabguard.pki.pkcs11 import Pkcs11KeyBackend

    if not (state.pkcs11_module and state.pkcs11_token):
        raise ConfigurationError(f"{STATE} names no PKCS#11 module and token")
    backend = Pkcs11KeyBackend(state.pkcs11_module, state.pkcs11_token, pin_from_env(env))
    try:
        yield backend
    finally:
        backend.close()


__all__ = ["OpenedRoot", "RootState", "create_root", "opened_root"]
