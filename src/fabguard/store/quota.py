"""An order's quota, taken atomically in the caller's transaction: units issued one by one (``take_quota``)
and units a quota lease reserves for a site agent (``reserve_units``). Both are one conditional ``UPDATE``
(``used + n <= quota``, with ``CHECK (used <= quota)`` behind it), so no concurrency can take one unit over."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from fabguard.store.models import Order

# Built once: the provisioning writer takes quota in every group, and building the statement (operators,
# cache key) cost several times running it (issue 28's profile). Constants, not caches.
_o = cast(Table, Order.__table__).c
_TAKE_QUOTA = (
    update(cast(Table, Order.__table__))
    .where(_o.id == bindparam("take_order"), _o.used + bindparam("take_units") <= _o.quota)
    .values(used=_o.used + bindparam("take_units"))
)


def take_quota(session: Session, order_id: str, units: int) -> bool:
    """Take ``units`` of the order's quota at once; False (and nothing taken) when fewer are left."""
    result = session.execute(_TAKE_QUOTA, {"take_order": order_id, "take_units": units})
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def reserve_units(session: Session, order_id: str, units: int) -> bool:
    """Take ``units`` of an active order's quota at once; False when fewer are left. Atomic under any
    concurrency, like ``take_quota`` for issued units."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state == "active", Order.used + units <= Order.quota)
        .values(used=Order.used + units)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_units(session: Session, order_id: str, units: int) -> bool:
    """Give ``units`` back to the order's quota (a closed lease's unused units, ADR 0022): ``used`` decreases by
    exactly that, never below zero (``CHECK (used >= 0)`` behind it); False, nothing changed, if fewer are used."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.used >= units)
        .values(used=Order.used - units)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
