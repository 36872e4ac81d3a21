"""Reads of one serial's history (unit search and genealogy): indexed by serial everywhere
(``ix_units_serial``, ``ix_test_records_serial_site_id``, ``ix_events_serial_seq``,
``ix_field_checks_serial_at``), so a unit's page costs the same among millions of units. A search by what a
unit shows in the field (a MAC address, its certificate's serial or SHA-256, its key's fingerprint) reads
unique columns only (``allocated_macs``' primary key, ``units``' and ``superseded_certificates``' unique
keys)."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fabguard.store.eventlog import event_count
from fabguard.store.field_models import FieldCheck
from fabguard.store.identity_models import AllocatedMac, UnitIdentityRow
from fabguard.store.models import (
    Event,
    Fixture,
    LedgerNode,
    Order,
    Product,
    SupersededCertificate,
    TestRecordRow,
    Unit,
)

# The highest code point: ``serial >= q AND serial < q + TOP`` is a prefix match an index can serve.
TOP = "\U0010ffff"


def serials_starting(s: Session, prefix: str, limit: int, site_id: str | None = None) -> list[str]:
    """Up to ``limit`` serials that start with ``prefix``, tested or provisioned (at ``site_id``: tested
    there or provisioned on one of its orders), in order."""
    t = TestRecordRow
    tested = select(t.serial).where(t.serial >= prefix, t.serial < prefix + TOP).distinct()
    made = select(Unit.serial).where(Unit.serial >= prefix, Unit.serial < prefix + TOP)
    if site_id is not None:
        tested = tested.where(t.site_id == site_id)
        made = made.join(Order, Order.id == Unit.order_id).where(Order.site_id == site_id)
    found: set[str] = set()
    for query in (tested.order_by(t.serial), made.order_by(Unit.serial)):
        found.update(x for x in s.execute(query.limit(limit)).scalars() if x.startswith(prefix))
    return sorted(found)[:limit]


def serials_by_identifier(s: Session, digits: str, site_id: str | None = None) -> list[str]:
    """The serials whose MAC address, certificate (serial number or SHA-256, current or superseded) or key
    fingerprint is ``digits`` (lowercase hex, no separators; at ``site_id``: units of its orders), in order."""
    found: set[str] = set()
    cert_serial = digits.lstrip("0") or "0"  # stored as format(n, "x")
    unit_keys = [Unit.cert_serial == cert_serial]
    if len(digits) == 64:
        unit_keys += [Unit.cert_sha256 == digits, Unit.key_fingerprint == digits]
    units = select(Unit.serial).where(or_(*unit_keys))
    old = select(SupersededCertificate.unit_serial).where(SupersededCertificate.cert_serial == cert_serial)
    queries = [units, old]
    if len(digits) == 12:  # a MAC address (EUI-48); an address given out names one unit's serial
        queries.append(select(AllocatedMac.serial).where(AllocatedMac.address == int(digits, 16)))
    for query in queries:
        found.update(s.execute(query).scalars())
    if site_id is not None and found:  # units of the site's orders, or identities drawn for one
        made = select(Unit.serial).join(Order, Order.id == Unit.order_id).where(Unit.serial.in_(found))
        drawn = select(UnitIdentityRow.serial).join(Order, Order.id == UnitIdentityRow.order_id)
        drawn = drawn.where(UnitIdentityRow.serial.in_(found))
        found = {x for q in (made, drawn) for x in s.execute(q.where(Order.site_id == site_id)).scalars()}
    return sorted(found)


def product_ids(s: Session) -> list[str]:
    """Every product's id (a handful): a serial's identities are looked up under each, by the unique key."""
    return list(s.execute(select(Product.id).order_by(Product.id)).scalars())


def site_orders_and_fixtures(s: Session, site_id: str) -> tuple[set[str], set[str]]:
    """The ids of a site's orders and fixtures (what an operator's view of a unit keeps)."""
    orders = set(s.execute(select(Order.id).where(Order.site_id == site_id)).scalars())
    fixtures = set(s.execute(select(Fixture.id).where(Fixture.site_id == site_id)).scalars())
    return orders, fixtures


def units(s: Session, serial: str) -> list[tuple[Unit, str]]:
    """The units of ``serial`` (one per product at most) with their order's site."""
    rows = s.execute(
        select(Unit, Order.site_id)
        .join(Order, Order.id == Unit.order_id)
        .where(Unit.serial == serial)
        .order_by(Unit.id)
    ).all()
    return [(u, site) for u, site in rows]


def superseded(s: Session, serial: str) -> list[SupersededCertificate]:
    """The certificates of ``serial`` that re-enrolment replaced."""
    query = select(SupersededCertificate).where(SupersededCertificate.unit_serial == serial)
    return list(s.execute(query.order_by(SupersededCertificate.id)).scalars())


def test_records(s: Session, serial: str, limit: int) -> list[TestRecordRow]:
    """The newest ``limit`` test records of ``serial``, oldest first."""
    query = select(TestRecordRow).where(TestRecordRow.serial == serial).order_by(TestRecordRow.id.desc()).limit(limit)
    return list(reversed(s.execute(query).scalars().all()))


def events(s: Session, serial: str, limit: int) -> list[Event]:
    """The first ``limit`` events naming ``serial``, in ledger order."""
    return list(s.execute(select(Event).where(Event.serial == serial).order_by(Event.seq).limit(limit)).scalars())


def field_checks(s: Session, serial: str, limit: int) -> list[FieldCheck]:
    """The newest ``limit`` field checks of ``serial``, oldest first."""
    query = select(FieldCheck).where(FieldCheck.serial == serial).order_by(FieldCheck.at.desc()).limit(limit)
    return list(reversed(s.execute(query).scalars().all()))


def tree_size(s: Session) -> int:
    """The ledger's current size."""
    return event_count(s)


def ledger_nodes(s: Session, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The Merkle nodes (level, index) -> hash among ``keys``, in one statement: per level an ``IN`` list of
    indexes, ORed, which both engines search on the primary key (SQLite scans the whole table for a
    row-value ``(level, idx) IN (...)``)."""
    by_level: dict[int, list[int]] = {}
    for level, idx in sorted(keys):
        by_level.setdefault(level, []).append(idx)
    if not by_level:
        return {}
    t = LedgerNode
    where = or_(*(and_(t.level == level, t.idx.in_(idxs)) for level, idxs in by_level.items()))
    return {(level, idx): bytes(h) for level, idx, h in s.execute(select(t.level, t.idx, t.hash).where(where))}


test_records.__test__ = False  # type: ignore[attr-defined]
