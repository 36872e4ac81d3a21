"""C2SP ``tlog-cosignature`` (Ed25519, ``cosignature/v1``): a witness's timestamped signature on a checkpoint.

A cosignature is one more signed-note signature line under the log's own::

    — <witness name> base64(key id || u64 timestamp, big-endian || Ed25519 signature)

The key id is ``SHA-256(name || "\\n" || 0x04 || public key)[:4]`` (signature type 0x04); the signed
message is ``"cosignature/v1\\ntime <timestamp>\\n"`` followed by the whole checkpoint body. Cosigner
(verifier) keys are written ``name+hexid+base64(0x04 || public key)``.

Pure: values in, values out; no file, no clock (the caller passes ``now``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import FabGuardError
from fabguard.ledger.checkpoint import parse_checkpoint

__all__ = [
    "COSIGNATURE_TYPE",
    "CosignatureError",
    "CosignedCheckpoint",
    "CosignerKey",
    "Ed25519Signer",
    "append_cosignatures",
    "cosign",
    "cosigned_message",
    "cosigner_key_id",
    "cosigner_verifier_key",
    "distinct_keys",
    "parse_cosigner_key",
    "require_cosignatures",
    "require_export_cosignatures",
    "signature_lines",
    "split_note",
    "valid_cosigners",
    "verify_cosignature",
]

COSIGNATURE_TYPE = b"\x04"
_DASH = "\u2014"
_MAX_TIMESTAMP = 2**63 - 1
# signed-note: a key name is non-empty and holds no Unicode space and no '+'.
_NAME_RE = re.compile(r"[^\s+]{1,200}")
# signed-note asks verifiers to accept at least 16 signatures and to bound the rest.
MAX_SIGNATURES = 64


class CosignatureError(FabGuardError, ValueError):
    """A cosignature or cosigner key that does not parse or does not verify."""

    code = "cosignature_invalid"
    status = 422


class CosignerKeyError(CosignatureError):
    """A cosigner (witness) verifier key that is not one."""

    code = "witness_key_invalid"


class Ed25519Signer(Protocol):
    """What signs a cosignature: an Ed25519 private key from ``cryptography`` or one kept in a token."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> ed25519.Ed25519PublicKey: ...


@dataclass(frozen=True, slots=True)
class CosignerKey:
    name: str
    key_id: bytes
    public_key: ed25519.Ed25519PublicKey

    @property
    def verifier_key(self) -> str:
        return cosigner_verifier_key(self.name, self.public_key)


def _raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def distinct_keys(keys: Iterable[CosignerKey]) -> int:
    """How many different witnesses ``keys`` are: counted by public key, whatever names they carry."""
    return len({_raw(k.public_key) for k in keys})


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise CosignatureError(f"a cosigner name is 1-200 characters with no space and no '+': {name!r}")
    return name


def cosigner_key_id(name: str, public_key: ed25519.Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + COSIGNATURE_TYPE + _raw(public_key)).digest()[:4]


def cosigner_verifier_key(name: str, public_key: ed25519.Ed25519PublicKey) -> str:
    """The key a log and its auditors keep to check this witness's cosignatures."""
    raw = base64.b64encode(COSIGNATURE_TYPE + _raw(public_key)).decode()
    return f"{check_name(name)}+{cosigner_key_id(name, public_key).hex()}+{raw}"


def parse_cosigner_key(text: str) -> CosignerKey:
    """A cosigner verifier key ``name+hexid+base64(0x04 || key)``; its id must match its name and key."""
    try:
        name, hex_id, b64 = text.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        kid = bytes.fromhex(hex_id)
    except (ValueError, binascii.Error):
        raise CosignerKeyError("malformed cosigner key: expected name+hexid+base64key") from None
    if raw[:1] != COSIGNATURE_TYPE or len(raw) != 33:
        raise CosignerKeyError("a cosigner key is an Ed25519 key of signature type 0x04 (C2SP tlog-cosignature)")
    check_name(name)
    public_key = ed25519.Ed25519PublicKey.from_public_bytes(raw[1:])
    if len(kid) != 4 or kid != cosigner_key_id(name, public_key):
        raise CosignerKeyError("cosigner key id does not match its name and key")
    return CosignerKey(name, kid, public_key)


def cosigned_message(body: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header, time line, then the whole checkpoint body."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


def cosign(body: str, name: str, signer: Ed25519Signer, timestamp: int) -> str:
    """One signature line ``— name base64(keyid || timestamp || signature)``, newline-terminated."""
    parse_checkpoint(body)
    signature = signer.sign(cosigned_message(body, timestamp))
    blob = cosigner_key_id(check_name(name), signer.public_key()) + timestamp.to_bytes(8, "big") + signature
    return f"{_DASH} {name} {base64.b64encode(blob).decode()}\n"


def split_note(note: str) -> tuple[str, list[str]]:
    """A signed note's text (with its final newline) and its signature lines (each without the newline)."""
    sep = note.rfind("\n\n")
    if sep < 0 or not note.endswith("\n"):
        raise CosignatureError("a signed note is a text, a blank line and newline-terminated signature lines")
    lines = note[sep + 2 :].split("\n")[:-1]
    if not lines or len(lines) > MAX_SIGNATURES:
        raise CosignatureError(f"a signed note has 1..{MAX_SIGNATURES} signature lines")
    return note[: sep + 1], lines


def signature_lines(text: str) -> list[str]:
    """Newline-terminated signature lines (what a witness answers), each checked for its form only."""
    if not text.endswith("\n"):
        raise CosignatureError("signature lines end with a newline")
    lines = text.split("\n")[:-1]
    if not lines or len(lines) > MAX_SIGNATURES:
        raise CosignatureError(f"expected 1..{MAX_SIGNATURES} signature lines")
    for line in lines:
        _parse_line(line)
    return lines


def _parse_line(line: str) -> tuple[str, bytes]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != _DASH or not _NAME_RE.fullmatch(parts[1]):
        raise CosignatureError("malformed signature line: expected '\u2014 <name> <base64>'")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise CosignatureError(f"the signature of {parts[1]} is not base64") from None
    if len(blob) < 5:
        raise CosignatureError(f"the signature of {parts[1]} is too short")
    return parts[1], blob


def verify_cosignature(body: str, line: str, key: CosignerKey) -> int:
    """Check one cosignature line by ``key`` over the checkpoint ``body``; returns its timestamp."""
    name, blob = _parse_line(line.rstrip("\n"))
    if name != key.name or blob[:4] != key.key_id:
        raise CosignatureError(f"the signature line is not by {key.name} (name or key id differ)")
    if len(blob) != 4 + 8 + 64:
        raise CosignatureError(f"the cosignature of {name} is not a timestamped Ed25519 signature (76 bytes)")
    timestamp = int.from_bytes(blob[4:12], "big")
    try:
        key.public_key.verify(blob[12:], cosigned_message(body, timestamp))
    except InvalidSignature:
        raise CosignatureError(
            f"the cosignature of {name} does not verify over this checkpoint: it was altered or made for another"
        ) from None
    return timestamp


def valid_cosigners(
    note: str, keys: Iterable[CosignerKey], *, now: int | None = None, skew: int = 300
) -> dict[str, int]:
    """The cosigners among ``keys`` whose cosignature on ``note`` verifies: verifier key -> timestamp.

    Lines of unknown keys are ignored (signed-note); a line of a known key that fails, or whose time is
    more than ``skew`` seconds after ``now``, rejects the whole note.
    """
    known = {(k.name, k.key_id): k for k in keys}
    body, lines = split_note(note)
    parse_checkpoint(body)
    found: dict[str, int] = {}
    for line in lines:
        name, blob = _parse_line(line)
        key = known.get((name, blob[:4]))
        if key is None:
            continue
        timestamp = verify_cosignature(body, line, key)
        if now is not None and timestamp > now + skew:
            raise CosignatureError(f"the cosignature of {name} is dated {timestamp}, in the future")
        found[key.verifier_key] = max(timestamp, found.get(key.verifier_key, 0))
    return found


def append_cosignatures(note: str, lines: Iterable[str]) -> str:
    """The note with ``lines`` added under its signatures (a line already there is not repeated)."""
    body, present = split_note(note)
    extra = [line.rstrip("\n") for line in lines]
    merged = present + [line for i, line in enumerate(extra) if line not in present and line not in extra[:i]]
    return body + "\n" + "".join(line + "\n" for line in merged)


@dataclass(frozen=True, slots=True)
class CosignedCheckpoint:
    """The checkpoint an audit required cosignatures on, and which of the given witnesses signed it."""

    size: int
    source: str
    cosigners: dict[str, int]


def require_cosignatures(
    notes: Mapping[str, str], witnesses: Iterable[CosignerKey], minimum: int, *, size: int | None = None, now: int
) -> CosignedCheckpoint:
    """Check that the newest checkpoint among ``notes`` (source -> note), or the one of ``size``, carries
    ``minimum`` valid cosignatures from distinct ``witnesses``. The log's signature on each note is the
    caller's to have checked; raises CosignatureError naming what is missing."""
    keys = list(witnesses)
    by_size: dict[int, tuple[str, str]] = {}
    for source, note in notes.items():
        body, _ = split_note(note)
        by_size[parse_checkpoint(body).size] = (source, note)
    if not by_size:
        raise CosignatureError("there is no checkpoint to look for cosignatures on")
    wanted = max(by_size) if size is None else size
    if wanted not in by_size:
        raise CosignatureError(f"there is no checkpoint of size {wanted} to look for cosignatures on")
    source, note = by_size[wanted]
    try:
        found = valid_cosigners(note, keys, now=now)
    except CosignatureError as exc:
        raise CosignatureError(f"checkpoint {source} (size {wanted}): {exc.message}") from None
    # Witnesses are counted by their public key, not their name: one key under two names is one witness.
    signers = {_raw(k.public_key) for k in keys if k.verifier_key in found}
    if len(signers) < minimum:
        names = ", ".join(k.name for k in keys if k.verifier_key in found) or "none"
        raise CosignatureError(
            f"checkpoint {source} (size {wanted}) carries {len(signers)} valid cosignatures of the {len(keys)} "
            f"witnesses given ({names}; counted by distinct key); {minimum} are required"
        )
    return CosignedCheckpoint(wanted, source, found)


def require_export_cosignatures(
    directory: Path, witnesses: Iterable[CosignerKey], minimum: int, *, size: int | None = None, now: int
) -> CosignedCheckpoint:
    """:func:`require_cosignatures` over the checkpoints of an export (``checkpoints/*.txt``)."""
    notes: dict[str, str] = {}
    for path in sorted((directory / "checkpoints").glob("*.txt")):
        try:
            notes[path.name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CosignatureError(f"checkpoint {path.name} is not text") from None
    return require_cosignatures(notes, witnesses, minimum, size=size, now=now)
