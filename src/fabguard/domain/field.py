"""Genuineness checks in the field: the challenge a device signs, the verdict, and the clone signals.

Pure: the caller (``service.field`` online, ``pki.field_offline`` from an export) gathers the facts
(does the certificate chain to one of our issuing CAs, which unit it names, is the signature good) and
this module decides. docs in the README's "Field checks" section.

What a device signs is ``CHALLENGE_CONTEXT || nonce`` (the context string, then the 32 raw nonce
bytes), with ECDSA-SHA256 (P-256), ECDSA-SHA384 (P-384) or Ed25519 (its key type). The context is a
constant no other protocol signs, so a signature the device made for something else (a TLS handshake,
a firmware manifest, another vendor's challenge) never verifies as an answer to ours.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from fabguard.domain.errors import Conflict, FabGuardError, InvalidRequest, NotFound

CHALLENGE_CONTEXT = b"FabGuard field genuineness challenge v1\x00"
NONCE_BYTES = 32
NONCE_LIFETIME = timedelta(minutes=5)
# Two checks of one serial from two different places closer than this: two devices answer for one.
CLONE_WINDOW = timedelta(minutes=10)
MAX_CHAIN_BYTES = 16_384
MAX_SIGNATURE_BYTES = 512
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/@-]{0,99}")
_NONCE = re.compile(r"[0-9a-f]{64}")


class Reason(enum.StrEnum):
    """Why a device is not genuine (a verdict, answered with 200 ``genuine: false``, not an error)."""

    CHAIN_UNTRUSTED = "chain_untrusted"  # not signed by any issuing CA of ours: never issued by us
    CERTIFICATE_EXPIRED = "certificate_expired"  # outside its validity period (not yet valid, or expired)
    ISSUING_CA_REVOKED = "issuing_ca_revoked"  # its issuing CA is revoked
    SERIAL_UNKNOWN = "serial_unknown"  # our CA's signature, but no unit was ever provisioned with it
    KEY_MISMATCH = "key_mismatch"  # the serial was provisioned, with another key
    CERTIFICATE_SUPERSEDED = "certificate_superseded"  # the unit's key, but a certificate re-enrolment replaced
    UNIT_REVOKED = "unit_revoked"  # the unit was revoked
    SIGNATURE_INVALID = "signature_invalid"  # the signature is not the certificate key's over this challenge
    # its product takes only allocated serials, and this one was never allocated to the unit's order
    SERIAL_NOT_ALLOCATED = "serial_not_allocated"


class CloneSignal(enum.StrEnum):
    """How a check shows an identity doing what one device cannot (raised as a ``field_clone`` alert)."""

    TWO_PLACES = "two_places"  # one serial answered from two places inside CLONE_WINDOW
    NOT_ISSUED = "not_issued"  # a certificate we never issued, or a serial with another key
    REVOKED_ACTIVE = "revoked_active"  # a revoked unit still answers


# The reasons that mean the certificate is not one we issued to this unit.
_NOT_ISSUED = frozenset(
    {Reason.CHAIN_UNTRUSTED, Reason.SERIAL_UNKNOWN, Reason.KEY_MISMATCH, Reason.SERIAL_NOT_ALLOCATED}
)


def challenge_message(nonce: bytes) -> bytes:
    """The exact bytes a device signs to answer the challenge ``nonce``."""
    if len(nonce) != NONCE_BYTES:
        raise InvalidRequest(f"a challenge nonce is {NONCE_BYTES} bytes", code="nonce_invalid")
    return CHALLENGE_CONTEXT + nonce


def parse_nonce(text: str) -> bytes:
    """A nonce as the API and CLI carry it: 64 lower-case hex digits."""
    if not isinstance(text, str) or not _NONCE.fullmatch(text):
        raise InvalidRequest("a nonce is 64 lower-case hex digits, as /field/challenge gave it", code="nonce_invalid")
    return bytes.fromhex(text)


def parse_source(text: str | None) -> str | None:
    """The caller's label for where the device was seen (a store, a scanner, a cloud region)."""
    if text is None or text == "":
        return None
    if not isinstance(text, str) or not _SOURCE.fullmatch(text):
        raise InvalidRequest(
            "a source is 1-100 characters: letters, digits, space and . _ : / @ -, starting with a letter or digit",
            code="field_source_invalid",
        )
    return text


def place_of(source: str | None, client: str | None) -> str:
    """Where a check came from, for the two-places rule: the caller's label, else its address."""
    return source or f"addr:{client or 'unknown'}"


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """What was recorded when a unit was provisioned (or last re-enrolled)."""

    serial: str
    order_id: str
    key_fingerprint: str
    cert_sha256: str
    revoked: bool
    # False when the unit's product takes only allocated serials (docs/identities.md) and this serial was
    # never allocated to the unit's order (a unit provisioned before its product's pools, or offline).
    allocated: bool = True


@dataclass(frozen=True, slots=True)
class CheckFacts:
    """Everything a verdict depends on, gathered by the caller from the certificate and the records."""

    chained: bool  # the leaf is signed by one of our issuing CAs
    ca_revoked: bool
    within_validity: bool
    subject_serial: str | None
    key_fingerprint: str  # SHA-256 of the leaf's SubjectPublicKeyInfo
    cert_sha256: str  # SHA-256 of the leaf's DER
    unit: UnitRecord | None  # the unit provisioned with this serial, if any
    signature_valid: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    genuine: bool
    reason: Reason | None
    serial: str | None
    order_id: str | None
    signature_valid: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "genuine": self.genuine,
            "reason": self.reason.value if self.reason else None,
            "serial": self.serial,
            "order_id": self.order_id,
            "signature_valid": self.signature_valid,
        }


def decide(f: CheckFacts) -> Verdict:
    """The verdict, first failing check first: chain, validity, CA, unit record, key, certificate, serial
    allocation, revocation, signature."""
    unit = f.unit

    def no(reason: Reason) -> Verdict:
        return Verdict(False, reason, f.subject_serial, unit.order_id if unit else None, f.signature_valid)

    if not f.chained:
        return no(Reason.CHAIN_UNTRUSTED)
    if not f.within_validity:
        return no(Reason.CERTIFICATE_EXPIRED)
    if f.ca_revoked:
        return no(Reason.ISSUING_CA_REVOKED)
    if unit is None or f.subject_serial is None:
        return no(Reason.SERIAL_UNKNOWN)
    if unit.key_fingerprint != f.key_fingerprint:
        return no(Reason.KEY_MISMATCH)
    if unit.cert_sha256 != f.cert_sha256:
        return no(Reason.CERTIFICATE_SUPERSEDED)
    if not unit.allocated:
        return no(Reason.SERIAL_NOT_ALLOCATED)
    if unit.revoked:
        return no(Reason.UNIT_REVOKED)
    if not f.signature_valid:
        return no(Reason.SIGNATURE_INVALID)
    return Verdict(True, None, f.subject_serial, unit.order_id, True)


@dataclass(frozen=True, slots=True)
class SeenAt:
    """An earlier check of the same serial: when, and from where."""

    at: datetime
    place: str


def clone_signal(
    verdict: Verdict, place: str, now: datetime, earlier: list[SeenAt], window: timedelta = CLONE_WINDOW
) -> tuple[CloneSignal | None, str | None]:
    """Whether this check shows a clone, and the other place when it is two places at once.

    A failed signature alone is no clone signal (a reader error, a copied certificate without its key);
    a device that holds its certificate's key and answers with a certificate we never issued, a revoked
    unit that answers, or one serial answering from two places inside ``window`` is.
    """
    if not verdict.signature_valid:
        return None, None
    if verdict.reason in _NOT_ISSUED:
        return CloneSignal.NOT_ISSUED, None
    if verdict.reason is Reason.UNIT_REVOKED:
        return CloneSignal.REVOKED_ACTIVE, None
    if not verdict.genuine:
        return None, None
    for seen in sorted(earlier, key=lambda s: s.at, reverse=True):
        if seen.place != place and abs(now - seen.at) <= window:
            return CloneSignal.TWO_PLACES, seen.place
    return None, None


def nonce_state(issued_at: datetime, used_at: datetime | None, now: datetime) -> str | None:
    """The refusal code of a stored nonce at ``now``, or None when it may be used."""
    if used_at is not None:
        return "nonce_used"
    if now >= issued_at + NONCE_LIFETIME or now < issued_at:
        return "nonce_expired"
    return None


def nonce_refusal(code: str | None) -> FabGuardError | None:
    """The error that answers a nonce in state ``code`` (``nonce_state``'s, or ``nonce_unknown`` for one
    the server did not issue), or None when it may be used."""
    return None if code is None else nonce_error(code)


def nonce_error(code: str) -> FabGuardError:
    """The error of a nonce that may not be used: ``nonce_used``, ``nonce_expired`` or ``nonce_unknown``."""
    if code == "nonce_used":
        return Conflict("this challenge was already answered: ask for a new one", code="nonce_used")
    if code == "nonce_expired":
        return Conflict(
            f"this challenge expired ({int(NONCE_LIFETIME.total_seconds())} s): ask for a new one",
            code="nonce_expired",
        )
    return NotFound("no such challenge: ask /api/v1/field/challenge for one", code="nonce_unknown")
