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

from sqlalchemy import Select, Table, bindparam, func, insert, select
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


# The writer's reads, built once (each group runs them; building them cost more than running them: issue 28's
# profile). Lists go in expanding parameters. Constants, not caches.
_o = cast(Table, Order.__table__).c
_LOCK_ORDER = (
    select(
        _o.id,
        _o.product_id,
        _o.site_id,
        _o.state,
        _o.valid_from,
        _o.valid_until,
        _o.quota,
        _o.used,
        _o.issuing_ca,
        Product.key_types,
        Product.cert_lifetime_days,
        Product.attestation_policy,
    )
    .join_from(Order, Product, Product.id == Order.product_id)
    .where(_o.id == bindparam("lock_order_id"))
    .with_for_update(of=Order)
)
_t = cast(Table, TestRecordRow.__table__).c
_LATEST_TESTS = select(_t.serial, _t.site_id, _t.outcome).where(
    _t.id.in_(
        select(func.max(_t.id))
        .where(_t.serial.in_(bindparam("serials", expanding=True)), _t.site_id.in_(bindparam("sites", expanding=True)))
        .group_by(_t.serial, _t.site_id)
    )
)
_u = cast(Table, Unit.__table__).c
_UNITS = select(
    _u.product_id, _u.serial, _u.order_id, _u.key_fingerprint, _u.certificate_pem, _u.revoked_at, _u.revocation_reason
).where(_u.product_id.in_(bindparam("products", expanding=True)), _u.serial.in_(bindparam("serials", expanding=True)))
_KEY_OWNERS = select(_u.key_fingerprint, _u.serial).where(_u.key_fingerprint.in_(bindparam("keys", expanding=True)))
_ca = cast(Table, CertificateAuthority.__table__).c
_CA_STATES = select(_ca.name, _ca.state, _ca.certificate_pem).where(_ca.name.in_(bindparam("names", expanding=True)))


def lock_order(s: Session, order_id: str) -> OrderRow | None:
    """Lock the order row (on PostgreSQL; SQLite's writer already serialises) and read it with its product."""
    row = s.execute(_LOCK_ORDER, {"lock_order_id": order_id}).one_or_none()
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
    ``site_ids``: one statement, searched through ``ix_test_records_serial_site_id`` (the one ``group_history``
    runs, with its lists bound)."""
    return _LATEST_TESTS.params(serials=list(serials), sites=list(site_ids))


def group_history(s: Session, asks: Sequence[tuple[str, str, str, str]], ca_names: Sequence[str]) -> GroupHistory:
    """The history of units ``(product_id, serial, key fingerprint, the order's site)`` and the states
    of ``ca_names``."""
    if not asks:
        return GroupHistory.empty()
    serials = sorted({serial for _, serial, _, _ in asks})
    products = sorted({product for product, _, _, _ in asks})
    tested = {(site, serial) for _, serial, _, site in asks}
    latest = {
        (site, serial): outcome
        for serial, site, outcome in s.execute(
            _LATEST_TESTS, {"serials": serials, "sites": sorted({site for site, _ in tested})}
        )
        if (site, serial) in tested
    }
    wanted = {(product, serial) for product, serial, _, _ in asks}
    units = {
        (row.product_id, row.serial): ExistingUnit(
            row.order_id, row.key_fingerprint, row.certificate_pem, row.revoked_at, row.revocation_reason
        )
        for row in s.execute(_UNITS, {"products": products, "serials": serials})
        if (row.product_id, row.serial) in wanted
    }
    owners = key_owners(s, sorted({key_fp for _, _, key_fp, _ in asks}))
    states, certificates = {}, {}
    for name, state, pem in s.execute(_CA_STATES, {"names": sorted(set(ca_names))}):
        states[name], certificates[name] = state, pem
    return GroupHistory(latest, units, owners, states, certificates)


def key_owners(s: Session, keys: Sequence[str]) -> dict[str, str]:
    """The serial of the unit holding each of ``keys`` (public key fingerprints), of any product."""
    return {fp: serial for fp, serial in s.execute(_KEY_OWNERS, {"keys": list(keys)})}


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
        s.execute(_INSERT_UNITS, list(units))


_INSERT_UNITS = insert(cast(Table, Unit.__table__))  # built once: a statement built per group costs its cache key
