"""The instance's two firmware keys: the manifest signing key and the key-encryption key (KEK).

The signing key ``firmware`` lives in the instance's key backend like the CA keys (an encrypted PKCS#8
file, or non-extractable in the HSM). ``fabguard init`` makes it, so devices can pin it before the first
release; an instance made before that gets it from its first release upload or ``fabguard firmware key``
(both writes by someone who may): reading it (``GET /api/v1/firmware/key``) never makes it, and answers
``firmware_key_not_found`` until then. The KEK is a 256-bit AES key in ``keys/firmware-kek.json``, sealed
with the instance passphrase (scrypt + AES-256-GCM), made by the first upload (only uploads and fetches,
both POSTs, use it). Both are held in memory only once opened.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fabguard.domain.errors import ConfigurationError, NotFound
from fabguard.firmware import envelope
from fabguard.pki.backends import KeyNotFound
from fabguard.pki.keys import SigningKey
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import FIRMWARE_KEY

SIGNING_KEY = FIRMWARE_KEY
KEK_FILE = "firmware-kek.json"


def signing_key(inst: Instance) -> SigningKey:
    """The firmware manifest signing key (P-256, as ``KeyStore.generate`` makes), created if missing."""
    with inst.firmware_keys.lock:
        if inst.config.key_backend == "file":
            if not inst.keys.path(SIGNING_KEY).exists():
                inst.keys.generate(SIGNING_KEY)
        else:
            try:
                return inst.keys.load(inst.keys.ref_for(SIGNING_KEY))
            except KeyNotFound:  # a token that fails is not a key to make
                inst.keys.generate(SIGNING_KEY)
        return inst.keys.load(inst.keys.ref_for(SIGNING_KEY))


def kek_path(inst: Instance) -> Path:
    return inst.keys.path(SIGNING_KEY).parent / KEK_FILE


def kek(inst: Instance) -> bytes:
    """The KEK, opened with the passphrase (once per opened instance) or made and sealed on first use."""
    state = inst.firmware_keys
    with state.lock:
        if state.kek is not None:
            return state.kek
        passphrase = inst.keys.passphrase()
        path = kek_path(inst)
        if not path.exists():
            _create(path, envelope.seal_kek(envelope.new_kek(), passphrase))
        try:
            value = envelope.open_kek(path.read_bytes(), passphrase)
        except envelope.EnvelopeError as exc:
            raise ConfigurationError(f"{path.name}: {exc}") from None
        state.kek = value
        return value


def _create(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` only if no file is there, atomically (another process may race us)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        # If another process made it first, theirs is the KEK.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()


def existing_signing_key(inst: Instance) -> SigningKey:
    """The firmware manifest signing key if it was made; never makes it (``firmware_key_not_found``)."""
    missing = NotFound(
        "this instance has no firmware signing key yet: the first release upload (POST "
        "/api/v1/firmware/releases) or 'fabguard firmware key' makes it",
        code="firmware_key_not_found",
    )
    if inst.config.key_backend == "file" and not inst.keys.path(SIGNING_KEY).exists():
        raise missing
    try:
        return inst.keys.load(inst.keys.ref_for(SIGNING_KEY))
    except KeyNotFound:  # not in the HSM's token (any other trouble with the token stays what it is)
        raise missing from None


def public_key_pem(inst: Instance, *, make_if_missing: bool = False) -> str:
    """The public key devices pin to check manifests (PEM SubjectPublicKeyInfo). Reading it makes nothing
    unless ``make_if_missing`` (a write: the command line, the operator's act)."""
    public = (signing_key(inst) if make_if_missing else existing_signing_key(inst)).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


__all__ = ["KEK_FILE", "SIGNING_KEY", "existing_signing_key", "kek", "kek_path", "public_key_pem", "signing_key"]
