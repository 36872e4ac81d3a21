"""Identity pools and allocations in the caller's transaction (``identity_models``).

A pool's counters are taken like an order's quota: the row is locked (``lock_pools``: ``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's one writer already serialises), its next values read, and the units
drawn are taken back with one conditional ``UPDATE`` (``next + n <= capacity``, a ``CHECK`` behind it).
Never an in-process counter: two processes drawing from one pool wait for each other's row lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from fabguard.domain.identities import CheckAlgorithm, MacAddress, MacBlock, SerialFormat
from fabguard.domain.identities.pools import IdentityPool, MatterPool
from fabguard.store.identity_models import AllocatedMac, IdentityPoolRow, UnitIdentityRow
from fabguard.store.models import Order, Unit


@dataclass(frozen=True, slots=True)
class LockedPool:
    """A product's pools as their row lock read them: the declaration and the next unit of each counter."""

    pool: IdentityPool
    next_serial: int
    next_mac_unit: int


def pool_of(row: IdentityPoolRow) -> IdentityPool:
    """The declaration a row holds."""
    serials = None
    if row.serial_width is not None and row.serial_check is not None:
        serials = SerialFormat(row.serial_prefix or "", row.serial_width, CheckAlgorithm(row.serial_check))
    macs = None
    if row.mac_prefix is not None and row.mac_per_unit is not None:
        macs = MacBlock.parse(row.mac_prefix, per_unit=row.mac_per_unit, first=row.mac_first or 0, count=row.mac_count)
    matter = None
    if row.matter_vendor_id is not None and row.matter_product_id is not None:
        matter = MatterPool(
            row.matter_vendor_id,
            row.matter_product_id,
            row.matter_flow or 0,
            row.matter_discovery or 2,
            row.matter_iterations or 10000,
        )
    return IdentityPool(serials, row.serials_required, macs, matter)


def pool_columns(pool: IdentityPool) -> dict[str, Any]:
    """A declaration as the row's columns (the counters aside)."""
    s, m, t = pool.serials, pool.macs, pool.matter
    return {
        "serial_prefix": s.prefix if s else None,
        "serial_width": s.width if s else None,
        "serial_check": s.check.value if s else None,
        "serials_required": pool.serials_required,
        "serial_capacity": pool.serial_capacity,
        "mac_prefix": m.prefix_text if m else None,
        "mac_first": m.first if m else None,
        "mac_count": m.size if m else None,
        "mac_per_unit": m.per_unit if m else None,
        "mac_capacity": pool.mac_capacity,
        "matter_vendor_id": t.vendor_id if t else None,
        "matter_product_id": t.product_id if t else None,
        "matter_flow": t.flow if t else None,
        "matter_discovery": t.discovery if t else None,
        "matter_iterations": t.iterations if t else None,
    }


def lock_pools(s: Session, product_ids: Sequence[str]) -> dict[str, LockedPool]:
    """Lock the pools of ``product_ids`` (in product order) and read them."""
    if not product_ids:
        return {}
    rows = s.execute(_LOCK_POOLS, {"products": sorted(set(product_ids))}).scalars()
    return {r.product_id: LockedPool(pool_of(r), r.next_serial, r.next_mac_unit) for r in rows}


# Built once (every provisioning group runs it): an expanding list, so one compiled statement for any number.
_LOCK_POOLS = (
    select(IdentityPoolRow)
    .where(IdentityPoolRow.product_id.in_(bindparam("products", expanding=True)))
    .order_by(IdentityPoolRow.product_id)
    .with_for_update()
)


def take_pool(s: Session, product_id: str, serials: int, mac_units: int) -> bool:
    """Take ``serials`` serials and ``mac_units`` units' addresses at once; False (nothing taken) if they do
    not fit. Atomic under any concurrency, like ``store.quota.take_quota``."""
    p = IdentityPoolRow
    within = [p.product_id == product_id]
    if serials:  # a NULL capacity (no serial format) fits nothing
        within.append(p.next_serial + serials <= p.serial_capacity)
    if mac_units:
        within.append(p.next_mac_unit + mac_units <= p.mac_capacity)
    result = s.execute(
        update(p)
        .where(*within)
        .values(next_serial=p.next_serial + serials, next_mac_unit=p.next_mac_unit + mac_units)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def order_allocations(s: Session, order_ids: Sequence[str]) -> dict[str, int]:
    """How many units' identities each order holds: the figure its row keeps (read under the orders' locks,
    so exact; one primary-key read, however many the order holds)."""
    if not order_ids:
        return {}
    o = Order.__table__.c
    rows = s.execute(select(o.id, o.identities_allocated).where(o.id.in_(sorted(set(order_ids)))))
    return {order_id: int(n) for order_id, n in rows}


def allocations(s: Session, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], UnitIdentityRow]:
    """The identities allocated under each ``(product_id, serial)``."""
    if not pairs:
        return {}
    wanted = set(pairs)
    r = UnitIdentityRow
    rows = s.execute(
        select(r).where(r.product_id.in_(sorted({p for p, _ in wanted})), r.serial.in_(sorted({x for _, x in wanted})))
    ).scalars()
    return {(row.product_id, row.serial): row for row in rows if (row.product_id, row.serial) in wanted}


def serial_used(s: Session, product_id: str, serial: str) -> bool:
    """Whether a unit of the product already carries ``serial``: provisioned (before its pools, or with a
    station's own serial) or allocated."""
    u, r = Unit.__table__.c, UnitIdentityRow.__table__.c
    for c in (u, r):
        if s.execute(select(c.id).where(c.product_id == product_id, c.serial == serial).limit(1)).first():
            return True
    return False


def passcodes_taken(s: Session, passcodes: Sequence[int]) -> set[int]:
    c = UnitIdentityRow.__table__.c
    return {int(p) for (p,) in s.execute(select(c.passcode).where(c.passcode.in_(list(passcodes))))}


def insert_allocations(s: Session, units: Sequence[dict[str, Any]], macs: Sequence[dict[str, Any]]) -> None:
    """Record allocated identities and their addresses, each in one multi-row insert, and add them to their
    orders' count (the orders are locked by the caller, as ``order_allocations`` read them)."""
    if units:
        s.execute(insert(cast(Table, UnitIdentityRow.__table__)), list(units))
        o = Order.__table__.c
        for order_id, n in sorted(Counter(u["order_id"] for u in units).items()):
            s.execute(update(Order).where(o.id == order_id).values(identities_allocated=o.identities_allocated + n))
    if macs:
        s.execute(insert(cast(Table, AllocatedMac.__table__)), list(macs))


def pool_row(s: Session, product_id: str, *, lock: bool = False) -> IdentityPoolRow | None:
    return s.get(IdentityPoolRow, product_id, with_for_update=lock)


def given_out(s: Session, product_id: str) -> int:
    c = UnitIdentityRow.__table__.c
    return int(s.execute(select(func.count()).where(c.product_id == product_id)).scalar_one())


def mac_ranges(s: Session) -> list[tuple[str, int, int]]:
    """Every declared MAC block as ``(product_id, start, end)``."""
    out = []
    for row in s.execute(select(IdentityPoolRow).where(IdentityPoolRow.mac_prefix.is_not(None))).scalars():
        span = pool_of(row).mac_range()
        if span is not None:
            out.append((row.product_id, *span))
    return out


def identities_of_order(s: Session, order_id: str) -> list[UnitIdentityRow]:
    r = UnitIdentityRow
    return list(s.execute(select(r).where(r.order_id == order_id).order_by(r.id)).scalars())


def identities_of_product(s: Session, product_id: str) -> list[UnitIdentityRow]:
    r = UnitIdentityRow
    return list(s.execute(select(r).where(r.product_id == product_id).order_by(r.id)).scalars())


def serials_allocated(s: Session, units: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], bool]:
    """For units ``(product_id, serial, order_id)``: False where the product takes only allocated serials and
    the serial was not allocated to that order; True otherwise."""
    if not units:
        return {}
    required = {
        p
        for (p,) in s.execute(
            select(IdentityPoolRow.product_id).where(
                IdentityPoolRow.product_id.in_(sorted({p for p, _, _ in units})), IdentityPoolRow.serials_required
            )
        )
    }
    given = allocations(s, [(p, serial) for p, serial, _ in units if p in required])
    out = {}
    for product_id, serial, order_id in units:
        row = given.get((product_id, serial))
        out[(product_id, serial)] = product_id not in required or (row is not None and row.order_id == order_id)
    return out


def public_identity(row: UnitIdentityRow | None) -> dict[str, object] | None:
    """What a unit's identities show outside the station (manifests, listings): the serial's index, the MAC
    addresses and the Matter vendor, product and discriminator; never the passcode, salt or verifier."""
    if row is None:
        return None
    macs = [str(MacAddress(row.mac_first + i)) for i in range(row.mac_count)] if row.mac_first is not None else []
    out: dict[str, object] = {"serial_index": row.serial_index, "mac_addresses": macs, "matter": None}
    if row.passcode is not None:
        out["matter"] = {
            "vendor_id": row.vendor_id,
            "product_id": row.matter_product_id,
            "discriminator": row.discriminator,
        }
    return out
