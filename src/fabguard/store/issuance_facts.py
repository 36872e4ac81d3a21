"""What one unit's issuance decision reads in its transaction, in as few statements as it can.

The order row under its lock (with its product's profile), then, in one more statement, the unit's
history and its issuing CA's state: the per-unit path of ``service.provisioning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from fabguard.domain.issuance import OrderFacts, UnitHistory
from fabguard.domain.values import OrderState, TestOutcome
from fabguard.store.models import CertificateAuthority, Order, Product, TestRecordRow, Unit


@dataclass(frozen=True, slots=True)
class OrderRow:
    """The order as its row lock read it, with its product's profile (products never change)."""

    facts: OrderFacts
    issuing_ca: str
    key_types: str
    cert_lifetime_days: int | None
    attestation_policy: str


@dataclass(frozen=True, slots=True)
class ExistingUnit:
    """The unit already recorded under this product and serial."""

    order_id: str
    key_fingerprint: str
    certificate_pem: str
    revoked_at: datetime | None
    revocation_reason: str | None


def lock_order(s: Session, order_id: str) -> OrderRow | None:
    """Lock the order row (on PostgreSQL; SQLite's writer already serialises) and read it with its product."""
    o = Order.__table__.c
    row = s.execute(
        select(
            o.id,
            o.product_id,
            o.site_id,
            o.state,
            o.valid_from,
            o.valid_until,
            o.quota,
            o.used,
            o.issuing_ca,
            Product.key_types,
            Product.cert_lifetime_days,
            Product.attestation_policy,
        )
        .join_from(Order, Product, Product.id == Order.product_id)
        .where(o.id == order_id)
        .with_for_update(of=Order)
    ).one_or_none()
    if row is None:
        return None
    facts = OrderFacts(
        id=row.id,
        product_id=row.product_id,
        site_id=row.site_id,
        state=OrderState(row.state),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        quota=row.quota,
        used=row.used,
    )
    return OrderRow(facts, row.issuing_ca, row.key_types, row.cert_lifetime_days, row.attestation_policy)


def unit_history(
    s: Session, product_id: str, serial: str, key_fp: str, ca_name: str
) -> tuple[UnitHistory, ExistingUnit | None, str | None]:
    """The unit's history and its issuing CA's state, in one statement (read after the order lock, so a
    rival that held the lock has committed): latest test, the unit under this serial, the owner of this key."""
    latest = (
        select(TestRecordRow.outcome)
        .where(TestRecordRow.serial == serial)
        .order_by(TestRecordRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    serial_fp = (
        select(Unit.key_fingerprint).where(Unit.product_id == product_id, Unit.serial == serial).scalar_subquery()
    )
    key_owner = select(Unit.serial).where(Unit.key_fingerprint == key_fp).scalar_subquery()
    ca_state = select(CertificateAuthority.state).where(CertificateAuthority.name == ca_name).scalar_subquery()
    row = s.execute(select(latest, serial_fp, key_owner, ca_state)).one()
    history = UnitHistory(
        latest_test=TestOutcome(row[0]) if row[0] is not None else None,
        serial_key_fingerprint=row[1],
        key_owner_serial=row[2],
    )
    existing = None
    if row[1] is not None:  # a retry or a conflict: the rare path reads the whole unit
        u = Unit.__table__.c
        found = s.execute(
            select(u.order_id, u.key_fingerprint, u.certificate_pem, u.revoked_at, u.revocation_reason).where(
                u.product_id == product_id, u.serial == serial
            )
        ).one()
        existing = ExistingUnit(*found)
    return history, existing, row[3]


def insert_units(s: Session, units: Sequence[dict[str, Any]]) -> None:
    """Record issued units (columns of ``units`` by name) in one multi-row insert."""
    if units:
        s.execute(insert(cast(Table, Unit.__table__)), list(units))
