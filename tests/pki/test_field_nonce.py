"""Stateless field nonces (pki/field_nonce.py): the server's own nonce carries its expiry, and no other
bytes pass for one: a forged nonce, one with any byte changed, or one made under another key is unknown."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.domain.field import NONCE_BYTES, NONCE_LIFETIME, nonce_state
from fabguard.pki.field_nonce import issued_at, make_nonce, nonce_digest, nonce_expiry

KEY = secrets.token_bytes(32)
T0 = datetime(2026, 12, 7, 10, 0, 0, 500_000, tzinfo=UTC)


def test_a_nonce_is_32_bytes_carrying_its_expiry_and_every_one_differs() -> None:
    nonce, expires = make_nonce(KEY, T0)
    assert len(nonce) == NONCE_BYTES
    assert expires == (T0 + NONCE_LIFETIME).replace(microsecond=0)
    assert nonce_expiry(KEY, nonce) == expires
    assert len({make_nonce(KEY, T0)[0] for _ in range(1000)}) == 1000
    assert nonce_digest(nonce) != nonce_digest(make_nonce(KEY, T0)[0])


def test_it_may_be_used_within_its_lifetime_only() -> None:
    _, expires = make_nonce(KEY, T0)
    issued = issued_at(expires)
    assert issued <= T0  # never later than it really was issued
    assert nonce_state(issued, None, T0) is None
    assert nonce_state(issued, None, expires - timedelta(seconds=1)) is None
    assert nonce_state(issued, None, expires) == "nonce_expired"
    assert nonce_state(issued, None, issued - timedelta(seconds=1)) == "nonce_expired"  # from the future


@pytest.mark.parametrize("position", range(NONCE_BYTES))
def test_changing_any_byte_makes_it_unknown(position: int) -> None:
    nonce, _ = make_nonce(KEY, T0)
    tampered = bytearray(nonce)
    tampered[position] ^= 0x01
    assert nonce_expiry(KEY, bytes(tampered)) is None


def test_a_later_expiry_cannot_be_written_into_a_nonce() -> None:
    nonce, _ = make_nonce(KEY, T0)
    later = int((T0 + timedelta(days=365)).timestamp()).to_bytes(4, "big")
    assert nonce_expiry(KEY, nonce[:1] + later + nonce[5:]) is None


def test_random_bytes_and_another_instances_nonces_are_unknown() -> None:
    assert nonce_expiry(KEY, secrets.token_bytes(NONCE_BYTES)) is None
    theirs, _ = make_nonce(secrets.token_bytes(32), T0)
    assert nonce_expiry(KEY, theirs) is None
    assert nonce_expiry(KEY, b"") is None and nonce_expiry(KEY, make_nonce(KEY, T0)[0][:31]) is None
