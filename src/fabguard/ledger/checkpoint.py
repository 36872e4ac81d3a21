"""Signed checkpoints in the C2SP ``tlog-checkpoint`` / ``signed-note`` text format, Ed25519-signed.

A checkpoint commits to (origin, tree size, root hash)::

    example.com/fabguard-ledger
    1042
    <base64 root hash>

    — example.com/fabguard-ledger <base64(key id || signature)>

The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), as signed-note
defines for Ed25519; verifier keys are written ``name+hexid+base64(0x01 || public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import FabGuardError

ED25519_TYPE = b"\x01"
_DASH = "\u2014"  # the em dash that starts every signature line


class CheckpointError(FabGuardError, ValueError):
    """A checkpoint that does not parse or whose signature does not verify (still a ``ValueError``)."""

    code = "checkpoint_invalid"
    status = 422


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def _raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: ed25519.Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: ed25519.Ed25519PublicKey) -> str:
    """The text an auditor keeps to verify checkpoints offline."""
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(ED25519_TYPE + _raw(public_key)).decode()}"


def parse_verifier_key(text: str) -> tuple[str, bytes, ed25519.Ed25519PublicKey]:
    try:
        name, hex_id, b64 = text.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        if raw[:1] != ED25519_TYPE or len(raw) != 33:
            raise CheckpointError("only Ed25519 verifier keys are supported")
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(raw[1:])
        kid = bytes.fromhex(hex_id)
    except (ValueError, binascii.Error) as exc:
        raise CheckpointError(f"malformed verifier key: {exc}") from None
    if kid != key_id(name, public_key):
        raise CheckpointError("verifier key id does not match its name and key")
    return name, kid, public_key


def sign_checkpoint(checkpoint: Checkpoint, name: str, *private_keys: ed25519.Ed25519PrivateKey) -> str:
    """The signed note: the body and one signature line per key (two during a key rotation's overlap)."""
    if not private_keys:
        raise ValueError("a checkpoint is signed by at least one key")
    body = checkpoint.body()
    lines = []
    for private_key in private_keys:
        blob = base64.b64encode(key_id(name, private_key.public_key()) + private_key.sign(body.encode())).decode()
        lines.append(f"{_DASH} {name} {blob}\n")
    return f"{body}\n{''.join(lines)}"


def parse_checkpoint(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("a checkpoint body has an origin, a size and a root hash, each on its own line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError("malformed checkpoint origin or size")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise CheckpointError("malformed checkpoint root hash") from None
    if len(root) != 32:
        raise CheckpointError("a checkpoint root hash is 32 bytes")
    return Checkpoint(origin, int(size_text), root)


def open_signed_checkpoint(note: str, verifier: str) -> Checkpoint:
    """Verify a signed note with the auditor's verifier key and return the checkpoint it commits to."""
    name, kid, public_key = parse_verifier_key(verifier)
    sep = note.find("\n\n")
    if sep < 0:
        raise CheckpointError("a signed note has a body, a blank line and signature lines")
    body, signatures = note[: sep + 1], note[sep + 2 :]
    checkpoint = parse_checkpoint(body)
    for line in signatures.split("\n"):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise CheckpointError("malformed signature line")
        if parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise CheckpointError("malformed signature") from None
        if blob[:4] != kid:
            continue
        try:
            public_key.verify(blob[4:], body.encode())
        except InvalidSignature:
            raise CheckpointError(f"the signature of {name} on this checkpoint does not verify") from None
        if checkpoint.origin != name:
            raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the key's name {name!r}")
        return checkpoint
    raise CheckpointError(f"no signature by {name} on this checkpoint")
