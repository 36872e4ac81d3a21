"""The ledger's chain of signing keys: how the checkpoint key rotates with an overlap, and how a verifier that
kept one key comes to trust the others.

The log signs with one Ed25519 key at a time, except during a rotation's overlap, when checkpoints carry two
signatures (the old key's and the new one's), so a verifier that knows only the old key goes on verifying until
it learns the new one. The chain is a public document (``ledger-keys.json`` in an export, in the CRA pack,
``GET /api/v1/ledger/keys``)::

    {"format": "fabguard-ledger-keys/v1", "origin": "...", "keys": [
       {"verifier": "<name+id+key>", "from_size": 0, "until_size": 1200,
        "endorsement": null, "retirement": "<base64 signature by the next key>"},
       {"verifier": "...", "from_size": 1100, "until_size": null,
        "endorsement": "<base64 signature by the previous key>", "retirement": null}]}

Each key after the first is **endorsed** by its predecessor: a signature over :func:`transition_statement`
(origin, both keys, the tree size from which the new key signs). A key is **retired** by its successor: a
signature over :func:`retirement_statement` (origin, the retired key, the last tree size it may sign). Key
``i`` covers the checkpoints of sizes ``from_size .. until_size`` (open-ended while it signs). A verifier starts
from the one key it kept (its *anchor*, anywhere in the chain): the keys after it are trusted through their
endorsements, the keys before it through their retirements, each signed by a key already trusted. A key before
the anchor that was never retired is not trusted (nothing the anchor's side signed vouches for it).
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint, parse_verifier_key

KEYCHAIN_FORMAT = "fabguard-ledger-keys/v1"
KEYCHAIN_FILE = "ledger-keys.json"  # its name in an export and in the CRA pack


class KeyChainError(CheckpointError):
    """A key chain that does not parse, whose signatures do not verify, or that does not contain the anchor."""

    code = "ledger_key_chain_invalid"
    status = 422


def transition_statement(origin: str, previous: str, following: str, from_size: int) -> bytes:
    """What the previous key signs to hand over to the next one."""
    return f"fabguard ledger key transition v1\n{origin}\nprevious {previous}\nnext {following}\nfrom {from_size}\n".encode()


def retirement_statement(origin: str, retired: str, until_size: int) -> bytes:
    """What the next key signs when the previous one stops signing."""
    return f"fabguard ledger key retirement v1\n{origin}\nretired {retired}\nuntil {until_size}\n".encode()


def sign_statement(key: ed25519.Ed25519PrivateKey, statement: bytes) -> str:
    return base64.b64encode(key.sign(statement)).decode()


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """One key of the chain and the checkpoint sizes it may sign."""

    verifier: str
    from_size: int
    until_size: int | None = None
    endorsement: str | None = None
    retirement: str | None = None

    def covers(self, size: int) -> bool:
        return self.from_size <= size and (self.until_size is None or size <= self.until_size)

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return parse_verifier_key(self.verifier)[2]

    def to_json(self) -> dict[str, Any]:
        return {
            "verifier": self.verifier,
            "from_size": self.from_size,
            "until_size": self.until_size,
            "endorsement": self.endorsement,
            "retirement": self.retirement,
        }


def chain_document(origin: str, keys: Sequence[LedgerKey]) -> dict[str, Any]:
    return {"format": KEYCHAIN_FORMAT, "origin": origin, "keys": [k.to_json() for k in keys]}


def parse_chain(document: Mapping[str, Any]) -> tuple[str, tuple[LedgerKey, ...]]:
    """The origin and keys of a chain document, checked for shape only (no signature yet)."""
    if not isinstance(document, Mapping) or document.get("format") != KEYCHAIN_FORMAT:
        raise KeyChainError(f"not a ledger key chain (format {KEYCHAIN_FORMAT})")
    origin, raw = document.get("origin"), document.get("keys")
    if not isinstance(origin, str) or not isinstance(raw, list) or not raw:
        raise KeyChainError("a ledger key chain has an origin and at least one key")
    keys = tuple(_key(item, i) for i, item in enumerate(raw))
    for i, key in enumerate(keys):
        if parse_verifier_key(key.verifier)[0] != origin:
            raise KeyChainError(f"key {i} is named for another log than {origin!r}")
        if key.until_size is not None and key.until_size < key.from_size:
            raise KeyChainError(f"key {i} retires before it starts signing")
    if keys[0].from_size != 0 or keys[0].endorsement is not None:
        raise KeyChainError("the chain's first key signs from size 0 and has no endorsement")
    for i, (before, after) in enumerate(itertools.pairwise(keys), start=1):
        if after.from_size < before.from_size or after.endorsement is None:
            raise KeyChainError(f"key {i} must be endorsed by the key before it and start no earlier")
        if before.until_size is not None and before.until_size < after.from_size:
            raise KeyChainError(f"key {i - 1} retired before key {i} began: the overlap is missing")
    if keys[-1].retirement is not None or keys[-1].until_size is not None:
        raise KeyChainError("the chain's newest key is not retired")
    if any(k.until_size is None for k in keys[:-2]):
        raise KeyChainError("only the newest key and, during an overlap, the one before it may still sign")
    return origin, keys


def _key(item: object, i: int) -> LedgerKey:
    if not isinstance(item, Mapping):
        raise KeyChainError(f"key {i} is not an object")
    verifier, start, until = item.get("verifier"), item.get("from_size"), item.get("until_size")
    endorsement, retirement = item.get("endorsement"), item.get("retirement")
    if not isinstance(verifier, str) or type(start) is not int or start < 0:
        raise KeyChainError(f"key {i} needs a verifier key and a from_size")
    if until is not None and type(until) is not int:
        raise KeyChainError(f"key {i}'s until_size is not a whole number")
    for value in (endorsement, retirement):
        if value is not None and not isinstance(value, str):
            raise KeyChainError(f"key {i}'s signatures are base64 text")
    return LedgerKey(verifier, start, until, endorsement, retirement)


def trusted_keys(document: Mapping[str, Any], anchor: str) -> tuple[LedgerKey, ...]:
    """The keys of the chain a verifier who kept ``anchor`` may trust, oldest first (see the module's text).
    Between any two trusted neighbours both signatures are checked (the endorsement and, once the older is
    retired, its retirement), so no part of the trusted chain can be altered, whichever key was kept."""
    origin, keys = parse_chain(document)
    at = next((i for i, k in enumerate(keys) if k.verifier == anchor.strip()), None)
    if at is None:
        raise KeyChainError("the key you kept is not in this chain: it belongs to another log or the chain was swapped")
    first = at
    while first > 0 and keys[first - 1].retirement is not None:
        first -= 1  # retired keys before the anchor: each vouched for by its successor (checked below)
    trusted = keys[first:]
    for i, (older, newer) in enumerate(itertools.pairwise(trusted), start=first):
        statement = transition_statement(origin, older.verifier, newer.verifier, newer.from_size)
        _check(older, newer.endorsement, statement, f"key {i + 1}'s endorsement by key {i}")
        if older.until_size is not None:
            statement = retirement_statement(origin, older.verifier, older.until_size)
            _check(newer, older.retirement, statement, f"key {i}'s retirement by key {i + 1}")
        elif older.retirement is not None:
            raise KeyChainError(f"key {i} carries a retirement but no last size")
    return trusted


def _check(signer: LedgerKey, signature: str | None, statement: bytes, what: str) -> None:
    try:
        signer.public_key().verify(base64.b64decode(signature or "", validate=True), statement)
    except (InvalidSignature, binascii.Error, ValueError):
        raise KeyChainError(f"{what} does not verify: the chain was altered or not made by this log") from None


def open_checkpoint(note: str, keys: Sequence[LedgerKey]) -> Checkpoint:
    """The checkpoint a signed note commits to, if a key of ``keys`` that covers its size signed it."""
    problems: list[str] = []
    for key in keys:
        try:
            checkpoint = open_signed_checkpoint(note, key.verifier)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if key.covers(checkpoint.size):
            return checkpoint
        problems.append(
            f"the key that signed it covers sizes {key.from_size}..{key.until_size if key.until_size is not None else ''}"
            f" but the checkpoint is of size {checkpoint.size}"
        )
    raise CheckpointError("; ".join(dict.fromkeys(problems)) or "no key to verify the checkpoint with")


def keys_for(anchor: str, document: Mapping[str, Any] | None) -> tuple[LedgerKey, ...]:
    """The keys to verify with: the one kept alone (a log never rotated), or those of the chain it trusts."""
    if document is None:
        parse_verifier_key(anchor)
        return (LedgerKey(anchor.strip(), 0),)
    return trusted_keys(document, anchor)


def verifies(message: bytes, signature: bytes, keys: Sequence[LedgerKey]) -> bool:
    """Whether any key of ``keys`` made ``signature`` over ``message`` (a report, a manifest, a lease)."""
    for key in keys:
        try:
            key.public_key().verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False
