"""The pure rules of a field check: the message signed, the order of the checks, the clone signals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.field import (
    CHALLENGE_CONTEXT,
    CLONE_WINDOW,
    NONCE_LIFETIME,
    CheckFacts,
    CloneSignal,
    Reason,
    SeenAt,
    UnitRecord,
    challenge_message,
    clone_signal,
    decide,
    nonce_state,
    parse_nonce,
    parse_source,
)

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
UNIT = UnitRecord("SN-1", "po-1", "k" * 64, "c" * 64, revoked=False)
GOOD = CheckFacts(True, False, True, "SN-1", "k" * 64, "c" * 64, UNIT, True)


def test_the_message_is_the_context_then_the_nonce_and_nothing_else() -> None:
    nonce = bytes(range(32))
    assert challenge_message(nonce) == CHALLENGE_CONTEXT + nonce
    assert CHALLENGE_CONTEXT.endswith(b"\x00") and len(CHALLENGE_CONTEXT) == 40
    with pytest.raises(InvalidRequest):
        challenge_message(nonce[:31])
    assert parse_nonce(nonce.hex()) == nonce
    for bad in ("AB" * 32, "ab" * 31, "zz" * 32, ""):
        with pytest.raises(InvalidRequest) as e:
            parse_nonce(bad)
        assert e.value.code == "nonce_invalid"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"chained": False, "within_validity": False, "unit": None}, Reason.CHAIN_UNTRUSTED),
        ({"within_validity": False, "ca_revoked": True}, Reason.CERTIFICATE_EXPIRED),
        ({"ca_revoked": True, "unit": None}, Reason.ISSUING_CA_REVOKED),
        ({"unit": None, "signature_valid": False}, Reason.SERIAL_UNKNOWN),
        ({"key_fingerprint": "x" * 64, "cert_sha256": "y" * 64}, Reason.KEY_MISMATCH),
        ({"cert_sha256": "y" * 64, "unit": replace(UNIT, revoked=True)}, Reason.CERTIFICATE_SUPERSEDED),
        ({"unit": replace(UNIT, revoked=True), "signature_valid": False}, Reason.UNIT_REVOKED),
        ({"signature_valid": False}, Reason.SIGNATURE_INVALID),
    ],
)
def test_the_first_failing_check_is_the_reason(change: dict[str, object], reason: Reason) -> None:
    verdict = decide(replace(GOOD, **change))  # type: ignore[arg-type]
    assert (verdict.genuine, verdict.reason) == (False, reason)


def test_all_checks_passing_is_genuine() -> None:
    assert decide(GOOD).to_dict() == {
        "genuine": True,
        "reason": None,
        "serial": "SN-1",
        "order_id": "po-1",
        "signature_valid": True,
    }


def test_two_places_inside_the_window_is_a_clone_and_outside_it_is_not() -> None:
    genuine = decide(GOOD)
    near = [SeenAt(T0 - CLONE_WINDOW + timedelta(seconds=1), "store-a")]
    assert clone_signal(genuine, "store-b", T0, near) == (CloneSignal.TWO_PLACES, "store-a")
    assert clone_signal(genuine, "store-a", T0, near) == (None, None)
    far = [SeenAt(T0 - CLONE_WINDOW - timedelta(seconds=1), "store-a")]
    assert clone_signal(genuine, "store-b", T0, far) == (None, None)


def test_clone_signals_need_a_device_that_holds_its_key() -> None:
    revoked = decide(replace(GOOD, unit=replace(UNIT, revoked=True)))
    assert clone_signal(revoked, "p", T0, []) == (CloneSignal.REVOKED_ACTIVE, None)
    rogue = decide(replace(GOOD, unit=None))
    assert clone_signal(rogue, "p", T0, []) == (CloneSignal.NOT_ISSUED, None)
    copied = decide(replace(GOOD, chained=False, signature_valid=False))
    assert clone_signal(copied, "p", T0, [SeenAt(T0, "q")]) == (None, None)


def test_a_nonce_is_usable_once_and_for_its_lifetime() -> None:
    assert nonce_state(T0, None, T0 + NONCE_LIFETIME - timedelta(seconds=1)) is None
    assert nonce_state(T0, None, T0 + NONCE_LIFETIME) == "nonce_expired"
    assert nonce_state(T0, None, T0 - timedelta(seconds=1)) == "nonce_expired"
    assert nonce_state(T0, T0, T0) == "nonce_used"


@pytest.mark.parametrize("bad", ["-starts-with-dash", "a" * 101, "tab\there", "naïve"])
def test_a_source_label_is_short_printable_ascii(bad: str) -> None:
    assert parse_source("store-berlin/desk 2") == "store-berlin/desk 2" and parse_source("") is None
    with pytest.raises(InvalidRequest) as e:
        parse_source(bad)
    assert e.value.code == "field_source_invalid"
