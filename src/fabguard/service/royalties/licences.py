"""Issuing feature licences to provisioned, non-revoked units, signed by each product's licence signer.

The signer is a key of its own per product (``licence-<product>-<suffix>`` in the key store: an
encrypted file or the HSM), certified by the root for licence signing only; it is made on the first
licence of a product (``licence.signer_created``), or, under an offline root, at a ceremony
(``service.authority.ceremony_licences``: ``pending`` until imported; here only refused, naming the step). It rotates with an overlap (``rotate_signer``: a new
signer signs from then on, the old one retires and its licences stay valid) and can be revoked
(``revoke_signer``: its certificate goes on the root's CRL, which devices may check). Every licence is a ledger event (``licence.issued``)
written with its row in one transaction; a refused one (a revoked unit) is a ``licence.refused`` event.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, InvalidRequest, NotFound
from fabguard.domain.licensing import licence_expiry, licence_features
from fabguard.domain.values import ProductId, Serial
from fabguard.pki import profiles
from fabguard.pki.crl import REASONS
from fabguard.pki.licence import licence_body, licence_signer_certificate, sign_licence
from fabguard.service.authority import ceremony_licences
from fabguard.service.core.events import record_refusal
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.licence_models import Licence, LicenceSigner
from fabguard.store.models import Product, Unit


@dataclass(frozen=True)
class IssuedLicence:
    licence_id: str
    serial: str
    product_id: str
    document: dict[str, Any]
    ledger_entry: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.licence_id, "ledger_entry": self.ledger_entry, **self.document}


def _active(s: Session, product_id: str) -> LicenceSigner | None:
    """The product's newest signer that still signs (neither retired nor revoked)."""
    q = (
        select(LicenceSigner)
        .where(
            LicenceSigner.product_id == product_id,
            LicenceSigner.retired_at.is_(None),
            LicenceSigner.revoked_at.is_(None),
            LicenceSigner.certificate_pem.is_not(None),  # a pending one has no certificate yet
        )
        .order_by(LicenceSigner.generation.desc())
        .limit(1)
    )
    return s.execute(q).scalar_one_or_none()


def _next_generation(s: Session, product_id: str) -> int:
    q = select(func.max(LicenceSigner.generation)).where(LicenceSigner.product_id == product_id)
    return int(s.execute(q).scalar_one() or 0) + 1


def signer(inst: Instance, product_id: str) -> profiles.Issuer:
    """The product's licence signer, made (key, certificate under the root, ledger event) on first use, and
    again after its last one was revoked."""
    with inst.db.read() as s:
        row = _active(s, product_id)
        if row is None and s.get(Product, product_id) is None:
            raise NotFound(f"no product {product_id!r}", code="product_not_found")
    if row is None:
        row = _make_signer(inst, product_id, actor="fabguard")
    return profiles.Issuer(_certificate(row), inst.keys.load(row.key_ref))


def rotate_signer(inst: Instance, product_id: ProductId, *, actor: str) -> LicenceSigner:
    """A new signer for the product; the ones before it retire (they sign no more, and the licences they
    signed stay valid: the overlap while devices that hold them are in the field)."""
    with inst.db.read() as s:
        if s.get(Product, product_id.value) is None:
            raise NotFound(f"no product {product_id.value!r}", code="product_not_found")
    return _make_signer(inst, product_id.value, actor=actor, rotate=True)


def _signer_row(s: Session, product_id: str, generation: int, *, lock: bool = False) -> LicenceSigner:
    q = select(LicenceSigner).where(LicenceSigner.product_id == product_id, LicenceSigner.generation == generation)
    row = s.execute(q.with_for_update() if lock else q).scalar_one_or_none()
    if row is None:
        raise NotFound(f"product {product_id} has no licence signer {generation}", code="licence_signer_not_found")
    return row


def check_signer_revocation(s: Session, product_id: str, generation: int, reason_code: str) -> None:
    """Refuse a revocation that could not be carried out: an unknown signer or reason, a pending signer."""
    if reason_code not in REASONS:
        raise InvalidRequest(f"unknown reason {reason_code!r}; one of {', '.join(REASONS)}", code="invalid_reason")
    if _signer_row(s, product_id, generation).pending:
        raise Conflict(
            f"licence signer {generation} of {product_id} waits for its ceremony: it has no certificate to revoke",
            code="licence_signer_pending",
        )


def revoke_signer_in(
    s: Session,
    product_id: str,
    generation: int,
    *,
    reason_code: str,
    note: str,
    at: datetime,
    actor: str,
    detail: dict[str, object],
) -> dict[str, object]:
    """Put a licence signer's certificate on the root's CRL (the caller re-signs it once committed; an offline
    root's CRL lists it from the next ceremony): devices that check the CRL refuse every licence it signed.
    The next licence is signed by a newer signer (made if none, and the root is here). In the caller's
    transaction (a second person's approval: ``licence_acts``)."""
    row = _signer_row(s, product_id, generation, lock=True)
    if row.revoked_at is None:
        row.revoked_at, row.revocation_reason = at, reason_code
        cert = _certificate(row)
        append_event(
            s,
            "licence.signer_revoked",
            at=at,
            actor=actor,
            detail={
                **detail,
                "product_id": product_id,
                "generation": generation,
                "certificate_serial": format(cert.serial_number, "x"),
                "reason": reason_code,
                "note": note,
            },
        )
    return _signer_view(row)


def signers(inst: Instance, product_id: ProductId) -> list[dict[str, Any]]:
    """The product's licence signers, oldest first: their certificates and states (the published chain)."""
    with inst.db.read() as s:
        rows = s.execute(
            select(LicenceSigner).where(LicenceSigner.product_id == product_id.value).order_by(LicenceSigner.generation)
        ).scalars()
        return [_signer_view(r) for r in rows]


def _signer_view(r: LicenceSigner) -> dict[str, Any]:
    """A signer as listed; a pending one (an offline root's, waiting for its ceremony) has no certificate."""
    cert = None if r.pending else _certificate(r)
    state = "pending" if cert is None else "revoked" if r.revoked_at else "retired" if r.retired_at else "signing"
    return {
        "product_id": r.product_id,
        "generation": r.generation,
        "state": state,
        "certificate_serial": format(cert.serial_number, "x") if cert else None,
        "not_after": cert.not_valid_after_utc.isoformat() if cert else None,
        "created_at": r.created_at.isoformat(),
        "retired_at": r.retired_at.isoformat() if r.retired_at else None,
        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        "revocation_reason": r.revocation_reason,
        "certificate_pem": r.certificate_pem if cert else None,
    }


def _certificate(row: LicenceSigner) -> x509.Certificate:
    if row.certificate_pem is None:  # callers look for signers that have one (a pending one is refused before)
        raise ValueError(f"licence signer {row.generation} of {row.product_id} waits for its ceremony")
    return x509.load_pem_x509_certificate(row.certificate_pem.encode())


def _make_signer(inst: Instance, product_id: str, *, actor: str, rotate: bool = False) -> LicenceSigner:
    now = inst.clock()
    root = _root_here(inst, product_id)  # an offline root (ca_key_offline) refuses before a key is made
    key_name = f"licence-{product_id}-{secrets.token_hex(4)}"
    key_ref = inst.keys.generate(key_name)
    cert = licence_signer_certificate(
        root, inst.keys.load(key_ref).public_key(), inst.config.organization, product_id, now
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    try:
        with inst.db.transaction() as s:
            # The product's row is the signers' lock: a rival making the first signer (or rotating) at the same
            # moment waits here, and what it committed is then seen below (PostgreSQL reads committed data).
            s.execute(select(Product.id).where(Product.id == product_id).with_for_update())
            if not rotate and (rival := _active(s, product_id)) is not None:
                _drop_key(inst, key_ref, key_name)  # a rival made the product's signer first: use that one
                return rival
            generation = _next_generation(s, product_id)
            if rotate:
                for old in s.execute(
                    select(LicenceSigner).where(
                        LicenceSigner.product_id == product_id, LicenceSigner.retired_at.is_(None)
                    )
                ).scalars():
                    old.retired_at = now
            row = LicenceSigner(
                product_id=product_id, generation=generation, key_ref=key_ref, certificate_pem=pem, created_at=now
            )
            s.add(row)
            s.flush()
            append_event(
                s,
                "licence.signer_created",
                at=now,
                actor=actor,
                detail={
                    "product_id": product_id,
                    "generation": generation,
                    "key_ref": key_ref,
                    "certificate_sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
                    "certificate_serial": format(cert.serial_number, "x"),
                },
            )
    except IntegrityError:  # a rival took the same generation at the same moment
        _drop_key(inst, key_ref, key_name)
        with inst.db.read() as s:
            found = _active(s, product_id)
        if found is None:
            raise
        return found
    return row


def _root_here(inst: Instance, product_id: str) -> profiles.Issuer:
    """The root, which certifies licence signers; on an offline-root instance, a refusal naming the ceremony."""
    try:
        return inst.cas.root_issuer()
    except Conflict as exc:
        if exc.code != "ca_key_offline":
            raise
    with inst.db.read() as s:
        waiting = ceremony_licences.pending_of(s, product_id)
    step = (
        f"its signer {waiting.generation} waits for the ceremony: 'fabguard ceremony sign' the request bundle, "
        "then 'fabguard ceremony import'"
        if waiting is not None
        else f"'fabguard ceremony add-licence-signer {product_id} --out DIR', then 'ceremony sign' and 'ceremony import'"
    )
    raise Conflict(
        f"this instance's root is offline: product {product_id}'s licence signer is certified at a ceremony "
        f"({step}; docs/ceremony.md)",
        code="ca_key_offline",
    ) from None


def _drop_key(inst: Instance, key_ref: str, key_name: str) -> None:
    if key_ref.startswith("file:"):  # the unused key goes (an HSM object stays: the key store deletes none)
        inst.keys.path(key_name).unlink(missing_ok=True)


def issue_licence(
    inst: Instance,
    serial: Serial,
    *,
    features: Sequence[object],
    actor: str,
    not_after: datetime | None = None,
    product_id: ProductId | None = None,
) -> IssuedLicence:
    """A signed licence for ``features`` bound to the unit's current certificate; refused for a revoked unit."""
    names = licence_features(features)
    now = inst.clock()
    expiry = licence_expiry(not_after, now)
    unit = _unit(inst, serial.value, product_id)
    if unit.revoked_at is not None:
        _refuse_revoked(inst, unit, names, actor)
    signed_by = signer(inst, unit.product_id)
    licence_id = f"lic-{secrets.token_hex(8)}"
    device_cert = x509.load_pem_x509_certificate(unit.certificate_pem.encode())
    body = licence_body(
        licence_id=licence_id,
        organization=inst.config.organization,
        product_id=unit.product_id,
        serial=serial.value,
        device_certificate=device_cert,
        features=names,
        issued_at=now,
        not_after=expiry,
    )
    document = sign_licence(body, signed_by)
    with inst.db.transaction() as s:
        # Re-read under the lock: a revocation that committed meanwhile wins, and nothing is issued.
        current = s.execute(select(Unit).where(Unit.id == unit.id).with_for_update()).scalar_one()
        revoked = current.revoked_at is not None
        if not revoked and current.cert_sha256 != unit.cert_sha256:
            raise Conflict(f"unit {serial} changed while its licence was made: ask again", code="conflict")
        seq = 0 if revoked else _record(s, unit, body, document, actor, now)
    if revoked:  # outside the transaction: the refusal event is written on its own
        _refuse_revoked(inst, unit, names, actor)
    return IssuedLicence(licence_id, serial.value, unit.product_id, document, seq - 1)


def _record(s: Session, unit: Unit, body: dict[str, Any], document: dict[str, Any], actor: str, now: datetime) -> int:
    """The ``licence.issued`` event and the licence's row, in the caller's transaction; the event's number."""
    signed = json.dumps(document, sort_keys=True)
    seq = append_event(
        s,
        "licence.issued",
        at=now,
        actor=actor,
        order_id=unit.order_id,
        serial=unit.serial,
        detail={
            "licence_id": body["id"],
            "product_id": unit.product_id,
            "cert_sha256": unit.cert_sha256,
            "cert_serial": unit.cert_serial,
            "features": body["features"],
            "not_after": body["not_after"],
            "licence_sha256": hashlib.sha256(signed.encode()).hexdigest(),
        },
    )
    not_after = datetime.fromisoformat(body["not_after"].replace("Z", "+00:00")) if body["not_after"] else None
    s.add(
        Licence(
            id=body["id"],
            product_id=unit.product_id,
            serial=unit.serial,
            cert_sha256=unit.cert_sha256,
            features=json.dumps(body["features"]),
            not_after=not_after,
            issued_at=now,
            issued_by=actor,
            document=signed,
            event_seq=seq,
        )
    )
    return seq


def _refuse_revoked(inst: Instance, unit: Unit, features: tuple[str, ...], actor: str) -> NoReturn:
    refusal = Conflict(f"unit {unit.serial} is revoked: it gets no licence", code="unit_revoked")
    detail: dict[str, object] = {"product_id": unit.product_id, "features": list(features)}
    record_refusal(
        inst, "licence.refused", refusal, actor=actor, order_id=unit.order_id, serial=unit.serial, detail=detail
    )
    raise refusal


def _unit(inst: Instance, serial: str, product_id: ProductId | None) -> Unit:
    q = select(Unit).where(Unit.serial == serial)
    if product_id is not None:
        q = q.where(Unit.product_id == product_id.value)
    with inst.db.read() as s:
        units = list(s.execute(q).scalars())
    if not units:
        raise NotFound(f"no provisioned unit {serial!r}: only a provisioned unit gets a licence", code="unit_not_found")
    if len(units) > 1:
        raise InvalidRequest(f"serial {serial} exists in several products: name the product", code="ambiguous_serial")
    return units[0]


def licences_of(inst: Instance, serial: str) -> list[dict[str, Any]]:
    """The licences issued to a serial, oldest first, as signed documents."""
    with inst.db.read() as s:
        rows = s.execute(select(Licence).where(Licence.serial == serial).order_by(Licence.event_seq)).scalars()
        return [{"id": r.id, "ledger_entry": r.event_seq - 1, **json.loads(r.document)} for r in rows]
