"""Closing a quota lease: its unused units go back to the order (ADR 0022).

One transaction: the lease row is locked, the pure rule (``ledger.lease_end``) decides from what the
central server holds (the state, the units the synced agent log made, the agent's ``agent.lease_finished``
entry folded at sync, the lease's end and its last sync), the order's ``used`` decreases by exactly the
unused units, the lease is marked closed and a ``lease.closed`` event records leased, made and returned.
From then on every sync of the lease is refused (``sync.py``): the quota the agent did not use is the
order's again, so nothing the agent signs later may count.

A close is safe to retry: closing a closed lease changes nothing and answers the figures its close recorded
(``already``: true), so an answer lost on the way is asked for again, never returned twice.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from fabguard.domain.errors import Conflict, NotFound
from fabguard.ledger.lease_end import CLOSED, FINISHED, LeaseFacts, lease_end
from fabguard.service.core.instance import Instance
from fabguard.store.eventlog import append_event
from fabguard.store.models import Event, Order
from fabguard.store.quota import release_units
from fabguard.store.quota_leases import QuotaLease


def _finished(s: Session, lease_id: str) -> bool:
    """Whether the synced agent log holds the agent's own finish entry (folded as an event of ``agent:<lease>``)."""
    found = s.execute(
        select(Event.seq).where(Event.kind == FINISHED, Event.actor == f"agent:{lease_id}").limit(1)
    ).first()
    return found is not None


def _answer(row: QuotaLease, order: Order, figures: dict[str, int], *, already: bool) -> dict[str, object]:
    return {
        "lease_id": row.id,
        "order_id": row.order_id,
        "state": row.state,
        **figures,
        "order_used": order.used,
        "order_quota": order.quota,
        "already": already,
    }


def _closed_before(s: Session, row: QuotaLease) -> dict[str, object]:
    """The answer of a close already made: the figures its ``lease.closed`` event recorded, the order as now."""
    details = s.scalars(select(Event.detail).where(Event.kind == "lease.closed", Event.order_id == row.order_id))
    for text in details:
        detail = json.loads(text)
        if detail.get("lease_id") == row.id:
            order = s.get(Order, row.order_id)
            assert order is not None
            figures = {k: int(detail[k]) for k in ("leased", "made", "returned")}
            return _answer(row, order, figures, already=True)
    raise Conflict(f"lease {row.id} is closed and no close of it is recorded", code="lease_closed")


def close_lease(inst: Instance, lease_id: str, *, actor: str) -> dict[str, object]:
    """Close the lease and return its unused units to its order, or refuse (``lease_not_final``,
    ``lease_discrepancy``) with nothing changed. A closed lease answers its close's figures again."""
    now = inst.clock()
    with inst.db.transaction() as s:
        row = s.get(QuotaLease, lease_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no lease {lease_id!r}", code="lease_not_found")
        if row.state == CLOSED:
            return _closed_before(s, row)
        finished = _finished(s, row.id)
        end = lease_end(
            LeaseFacts(
                lease_id=row.id,
                state=row.state,
                units=row.units,
                units_synced=row.units_synced,
                not_after=row.not_after,
                synced_at=row.synced_at,
                finished=finished,
            ),
            now,
        )
        if end.returned and not release_units(s, row.order_id, end.returned):
            raise Conflict(  # the order's used always holds its leases' units; a row that does not is no close
                f"order {row.order_id} does not hold lease {lease_id}'s {end.returned} units", code="lease_discrepancy"
            )
        row.state = CLOSED
        order = s.get(Order, row.order_id, populate_existing=True)
        assert order is not None
        detail = {"lease_id": row.id, "site_id": row.site_id, **end.to_dict(), "finished": finished}
        append_event(s, "lease.closed", at=now, actor=actor, order_id=row.order_id, detail=detail)
        return _answer(row, order, end.to_dict(), already=False)
