"""Stateless field-check nonces: a challenge that carries its own expiry and a MAC under the instance's key.

Issuing a challenge writes nothing: the server can tell its own nonces (and their expiry) from the nonce
alone, with the key every server process of the instance shares (``KeyStore.secret``). Only a *used*
nonce is written, to the replay set (``store.field_models.FieldNonce``), in the transaction of its check.

A nonce is still the 32 bytes devices have always signed (``domain.field.NONCE_BYTES``, 64 hex digits on
the wire), laid out as

    version (1 byte, 1) || expires_at (4 bytes, big-endian Unix seconds) || random (11 bytes)
    || HMAC-SHA256(key, LABEL || the first 16 bytes), first 16 bytes

88 random bits keep two nonces of one second apart (the replay set is keyed by the nonce); a 128-bit MAC
makes a nonce the server did not issue, or one with its expiry changed, unknown. Pure (values in, values
out): the caller passes the key and the time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from fabguard.domain.field import NONCE_BYTES, NONCE_LIFETIME

VERSION = 1
LABEL = b"FabGuard field nonce v1\x00"
_BODY = 16  # version, expiry, random
_RANDOM = 11
_MAC = NONCE_BYTES - _BODY
KEY_BYTES = 32


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, LABEL + body, hashlib.sha256).digest()[:_MAC]


def make_nonce(key: bytes, now: datetime, *, random: bytes | None = None) -> tuple[bytes, datetime]:
    """A fresh nonce issued at ``now`` and its expiry (``now`` + the lifetime, to the second below)."""
    expires = int((now + NONCE_LIFETIME).timestamp())
    rand = secrets.token_bytes(_RANDOM) if random is None else random
    if len(rand) != _RANDOM:
        raise ValueError(f"a nonce's random part is {_RANDOM} bytes")
    body = bytes([VERSION]) + expires.to_bytes(4, "big") + rand
    return body + _mac(key, body), datetime.fromtimestamp(expires, UTC)


def nonce_expiry(key: bytes, nonce: bytes) -> datetime | None:
    """The expiry a nonce of ours carries; None when it is not one this key issued (forged, tampered,
    another instance's, or of an unknown version)."""
    if len(nonce) != NONCE_BYTES or nonce[0] != VERSION:
        return None
    body, mac = nonce[:_BODY], nonce[_BODY:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        return None
    return datetime.fromtimestamp(int.from_bytes(body[1:5], "big"), UTC)


def issued_at(expires: datetime) -> datetime:
    """When a nonce with this expiry was issued (to the second)."""
    return expires - NONCE_LIFETIME


def nonce_digest(nonce: bytes) -> str:
    """The replay set's key of a nonce: its SHA-256, hex (the table holds no nonce a caller could answer)."""
    return hashlib.sha256(nonce).hexdigest()
