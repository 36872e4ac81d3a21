"""Field genuineness checks: hand out a challenge, then judge a device's answer, each in one transaction.

A challenge is 32 random bytes, kept only as their SHA-256 and usable once within
``domain.field.NONCE_LIFETIME``. A verification spends the nonce, gathers the facts (the CAs that may
have issued genuine units, ``authorities.device_issuers``: our issuing CAs and the site agents' CAs;
the units provisioned with the certificate's serial; the device's signature), lets
``domain.field`` decide, and records the outcome as a ``field.checked`` event (with the clone signal
it shows, which the ``field_clone`` detector raises as an alert) and a ``field_checks`` row. A
malformed answer or a nonce that cannot be used is refused (4xx), recorded as ``field.refused``, and
spends nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fabguard.domain import field
from fabguard.domain.errors import Conflict, FabGuardError, NotFound
from fabguard.pki.field import TrustedCa, check_facts, parse_chain, parse_signature, subject_serial
from fabguard.service.authority.authorities import device_issuers
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.store import identities as identity_rows
from fabguard.store.eventlog import append_event
from fabguard.store.field_models import FieldCheck, FieldNonce
from fabguard.store.models import Unit

CHECKED = "field.checked"
REFUSED = "field.refused"
MAX_CLIENT = 64


@dataclass(frozen=True, slots=True)
class Answer:
    """A device's answer to a challenge, parsed: the nonce, its signature and its certificate."""

    nonce: bytes
    signature: bytes
    leaf: x509.Certificate


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asks (the token's actor) and where the device was seen (a label, the caller's address)."""

    actor: str
    source: str | None = None
    client: str | None = None

    @property
    def place(self) -> str:
        return field.place_of(self.source, self.client)

    def detail(self) -> dict[str, object]:
        return {"source": self.source, "client": self.client}


def parse_answer(inst: Instance, origin: Origin, *, nonce: str, signature: str, chain_pem: str) -> Answer:
    """Parse an answer as the API and CLI receive it; a malformed one is refused and recorded."""
    try:
        return Answer(field.parse_nonce(nonce), parse_signature(signature), parse_chain(chain_pem))
    except FabGuardError as exc:
        record_refusal(inst, REFUSED, exc, actor=origin.actor, detail=origin.detail())
        raise


def parse_origin(inst: Instance, *, actor: str, source: str | None, client: str | None) -> Origin:
    """The origin of a check, its source label checked (a bad label is refused and recorded)."""
    client = client[:MAX_CLIENT] if client else None
    try:
        return Origin(actor, field.parse_source(source), client)
    except FabGuardError as exc:
        record_refusal(inst, REFUSED, exc, actor=actor, detail={"client": client})
        raise


def issue_challenge(inst: Instance, *, actor: str) -> dict[str, str]:
    """A fresh nonce for one device to sign (``context`` + nonce bytes, see ``domain.field``)."""
    nonce = secrets.token_bytes(field.NONCE_BYTES)
    now = inst.clock()
    expires = now + field.NONCE_LIFETIME
    with inst.db.transaction() as s:
        s.add(
            FieldNonce(
                nonce_sha256=hashlib.sha256(nonce).hexdigest(),
                issued_at=now,
                expires_at=expires,
                issued_to=actor[:128],
            )
        )
    return {"nonce": nonce.hex(), "expires_at": expires.isoformat(), "context": field.CHALLENGE_CONTEXT.hex()}


def _spend_nonce(s: Session, nonce: bytes, now: datetime) -> None:
    digest = hashlib.sha256(nonce).hexdigest()
    row = s.get(FieldNonce, digest)
    if row is None:
        raise NotFound("no such challenge: ask /api/v1/field/challenge for one", code="nonce_unknown")
    code = field.nonce_state(row.issued_at, row.used_at, now)
    if code == "nonce_used":
        raise Conflict("this challenge was already answered: ask for a new one", code="nonce_used")
    if code == "nonce_expired":
        raise Conflict(
            f"this challenge expired ({int(field.NONCE_LIFETIME.total_seconds())} s): ask for a new one",
            code="nonce_expired",
        )
    # The one write that decides between rivals: of two checks of one nonce, one updates the row.
    spent = s.execute(
        update(FieldNonce)
        .where(FieldNonce.nonce_sha256 == digest, FieldNonce.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("this challenge was already answered: ask for a new one", code="nonce_used")


def trusted_cas(s: Session) -> list[TrustedCa]:
    """The CAs that may have issued genuine units (our issuing CAs and site agents' CAs, any state but
    pending): the only anchors a device certificate may chain to. An agent CA's unit is genuine only as the
    certificate its lease's sync recorded (``decide`` asks for the recorded unit)."""
    return [
        TrustedCa(row.name, x509.load_pem_x509_certificate(str(row.certificate_pem).encode()), row.state == "revoked")
        for row in device_issuers(s)
    ]


def _units_of(s: Session, serial: str | None) -> list[field.UnitRecord]:
    if serial is None:
        return []
    rows = list(s.execute(select(Unit).where(Unit.serial == serial)).scalars())
    allocated = identity_rows.serials_allocated(s, [(u.product_id, u.serial, u.order_id) for u in rows])
    return [
        field.UnitRecord(
            u.serial,
            u.order_id,
            u.key_fingerprint,
            u.cert_sha256,
            u.revoked_at is not None,
            allocated[(u.product_id, u.serial)],
        )
        for u in rows
    ]


def verify(inst: Instance, answer: Answer, origin: Origin) -> dict[str, object]:
    """Judge one answer: the verdict, its reason and the clone signal, recorded as an event."""
    try:
        return _verify(inst, answer, origin)
    except FabGuardError as exc:
        record_refusal(inst, REFUSED, exc, actor=origin.actor, detail=origin.detail())
        raise


def _verify(inst: Instance, answer: Answer, origin: Origin) -> dict[str, object]:
    now = inst.clock()
    with inst.db.transaction() as s:
        _spend_nonce(s, answer.nonce, now)
        units = _units_of(s, subject_serial(answer.leaf))
        facts = check_facts(answer.leaf, trusted_cas(s), units, answer.nonce, answer.signature, now)
        verdict = field.decide(facts)
        earlier: list[field.SeenAt] = []
        if verdict.genuine and verdict.serial is not None:
            earlier = [
                field.SeenAt(at, place)
                for at, place in s.execute(
                    select(FieldCheck.at, FieldCheck.place).where(
                        FieldCheck.serial == verdict.serial,
                        FieldCheck.genuine.is_(True),
                        FieldCheck.at >= now - field.CLONE_WINDOW,
                    )
                ).all()
            ]
        signal, other = field.clone_signal(verdict, origin.place, now, earlier)
        detail: dict[str, object] = {
            **verdict.to_dict(),
            **origin.detail(),
            "place": origin.place,
            "cert_sha256": facts.cert_sha256,
            "cert_serial": format(answer.leaf.serial_number, "x"),
            "clone": signal.value if signal else None,
        }
        if other is not None:
            detail["other_place"] = other
        seq = append_event(
            s,
            CHECKED,
            at=now,
            actor=origin.actor,
            order_id=verdict.order_id,
            serial=verdict.serial,
            code=verdict.reason.value if verdict.reason else None,
            detail=detail,
        )
        s.add(
            FieldCheck(
                at=now,
                seq=seq,
                serial=(verdict.serial or "")[:64] or None,
                cert_sha256=facts.cert_sha256,
                genuine=verdict.genuine,
                reason=verdict.reason.value if verdict.reason else None,
                clone=signal.value if signal else None,
                place=origin.place[:128],
                source=origin.source,
                client=origin.client,
                actor=origin.actor[:128],
            )
        )
    return {**detail, "seq": seq, "checked_at": now.isoformat()}


def forget_expired_nonces(inst: Instance) -> int:
    """Maintenance: drop challenges past their expiry, used or not (an answer to one is then
    ``nonce_unknown``: still refused); returns how many went."""
    with inst.db.transaction() as s:
        gone = s.execute(
            delete(FieldNonce).where(FieldNonce.expires_at < inst.clock()).execution_options(synchronize_session=False)
        )
        return int(gone.rowcount)  # type: ignore[attr-defined]


def list_checks(inst: Instance, *, limit: int = 50) -> list[dict[str, object]]:
    """The latest field checks, newest first (the dashboard's table)."""
    with inst.db.read() as s:
        rows = s.execute(select(FieldCheck).order_by(FieldCheck.id.desc()).limit(min(limit, inst.limits.max_page)))
        return [
            {
                "seq": c.seq,
                "at": c.at.isoformat(),
                "serial": c.serial,
                "genuine": c.genuine,
                "reason": c.reason,
                "clone": c.clone,
                "place": c.place,
                "source": c.source,
                "client": c.client,
                "actor": c.actor,
            }
            for c in rows.scalars()
        ]
