"""What one unit's issuance decision reads in its transaction, in as few statements as it can.

The order rows under their locks (with their product's profile), then, in four statements for a whole
group of units, their history and their issuing CAs' states and certificates: what
``service/provisioning/group.py`` reads. A unit's test history is that of its order's site: the latest
record uploaded by a fixture of that site. A site agent's sync reads the same key and serial facts for the
units it brings home (``key_owners``, ``serial_keys``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, insert, select
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


@dataclass(frozen=True, slots=True)
class GroupHistory:
    """What a group of units' decisions read after the order locks, in four statements for the group:
    each serial's latest test outcome at each of the group's sites (``(site_id, serial)``: a record decides
    only at the site of the fixture that uploaded it), the units already under the group's serials, the
    owners of its public keys, and its issuing CAs' states and certificates."""

    latest_tests: dict[tuple[str, str], str]
    units: dict[tuple[str, str], ExistingUnit]
    key_owners: dict[str, str]
    ca_states: dict[str, str]
    ca_certificates: dict[str, str | None]

    @classmethod
    def empty(cls) -> GroupHistory:
        return cls({}, {}, {}, {}, {})

    def of(self, product_id: str, serial: str, key_fp: str, site_id: str) -> tuple[UnitHistory, ExistingUnit | None]:
        """The history of ``serial`` as an order of ``product_id`` at ``site_id`` sees it."""
        outcome = self.latest_tests.get((site_id, serial))
        existing = self.units.get((product_id, serial))
        history = UnitHistory(
            latest_test=TestOutcome(outcome) if outcome is not None else None,
            serial_key_fingerprint=existing.key_fingerprint if existing is not None else None,
            key_owner_serial=self.key_owners.get(key_fp),
            serial_order_id=existing.order_id if existing is not None else None,
            serial_revoked=existing is not None and existing.revoked_at is not None,
            serial_revocation_reason=existing.revocation_reason if existing is not None else None,
        )
        return history, existing


def latest_tests_query(serials: Sequence[str], site_ids: Sequence[str]) -> Select[str, str, str]:
    """``(serial, site_id, outcome)`` of the latest record of each of ``serials`` uploaded at each of
    ``site_ids``: one statement, searched through ``ix_test_records_serial_site_id``."""
    t = TestRecordRow.__table__.c
    newest = select(func.max(t.id)).where(t.serial.in_(serials), t.site_id.in_(site_ids)).group_by(t.serial, t.site_id)
    return select(t.serial, t.site_id, t.outcome).where(t.id.in_(newest))


def group_history(s: Session, asks: Sequence[tuple[str, str, str, str]], ca_names: Sequence[str]) -> GroupHistory:
    """The history of units ``(product_id, serial, key fingerprint, the order's site)`` and the states
    of ``ca_names``."""
    if not asks:
        return GroupHistory.empty()
    serials = sorted({serial for _, serial, _, _ in asks})
    products = sorted({product for product, _, _, _ in asks})
    tested = {(site, serial) for _, serial, _, site in asks}
    u, ca = Unit.__table__.c, CertificateAuthority.__table__.c
    latest = {
        (site, serial): outcome
        for serial, site, outcome in s.execute(latest_tests_query(serials, sorted({site for site, _ in tested})))
        if (site, serial) in tested
    }
    wanted = {(product, serial) for product, serial, _, _ in asks}
    units = {
        (row.product_id, row.serial): ExistingUnit(
            row.order_id, row.key_fingerprint, row.certificate_pem, row.revoked_at, row.revocation_reason
        )
        for row in s.execute(
            select(
                u.product_id,
                u.serial,
                u.order_id,
                u.key_fingerprint,
                u.certificate_pem,
                u.revoked_at,
                u.revocation_reason,
            ).where(u.product_id.in_(products), u.serial.in_(serials))
        )
        if (row.product_id, row.serial) in wanted
    }
    owners = key_owners(s, sorted({key_fp for _, _, key_fp, _ in asks}))
    states, certificates = {}, {}
    for name, state, pem in s.execute(
        select(ca.name, ca.state, ca.certificate_pem).where(ca.name.in_(sorted(set(ca_names))))
    ):
        states[name], certificates[name] = state, pem
    return GroupHistory(latest, units, owners, states, certificates)


def key_owners(s: Session, keys: Sequence[str]) -> dict[str, str]:
    """The serial of the unit holding each of ``keys`` (public key fingerprints), of any product."""
    u = Unit.__table__.c
    return {
        fp: serial for fp, serial in s.execute(select(u.key_fingerprint, u.serial).where(u.key_fingerprint.in_(keys)))
    }


def serial_keys(s: Session, product_id: str, serials: Sequence[str]) -> dict[str, str]:
    """The key fingerprint each of ``serials`` was issued with under ``product_id``."""
    u = Unit.__table__.c
    return {
        serial: fp
        for serial, fp in s.execute(
            select(u.serial, u.key_fingerprint).where(u.product_id == product_id, u.serial.in_(serials))
        )
    }


def insert_units(s: Session, units: Sequence[dict[str, Any]]) -> None:
    """Record issued units (columns of ``units`` by name) in one multi-row insert."""
    if units:
        s.execute(insert(cast(Table, Unit.__table__)), list(units))
