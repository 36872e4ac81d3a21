"""Allocating a unit's identities before it is provisioned (``POST /api/v1/units/allocate``, ADR 0014).

One transaction: lock the order, then its product's pool; read the facts (the serial's allocation if the
station named one, the identities the order holds, what is left in the pool); decide with the pure
policies (``domain/identities/allocation.py``); draw the serial, MAC addresses and Matter data; write
them, their ``identity.allocated`` event (a ledger entry) and the pool's counters; commit; only then
answer. A refusal draws nothing and is recorded (``identity.refused``); among them, Matter onboarding data
whose vendor or product ID the order's PAI would not put in the unit's DAC (``matter_ids_mismatch``). With
an idempotency key the answer is kept in the same transaction, so a station that lost it gets the same
identities again instead of drawing new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fabguard.domain.errors import Refusal
from fabguard.domain.identities.allocation import AllocationDecision, AllocationRequest, decide_allocation
from fabguard.domain.identities.matter_ids import PaiIds
from fabguard.domain.issuance import FixtureFacts, order_found
from fabguard.domain.values import OrderId, Serial, recorded_order_id
from fabguard.service.authority.matter_authorities import pai_ids
from fabguard.service.core import idempotency
from fabguard.service.core.events import refusal_event
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.identity_draws import IdentityDraws, UnitIdentity
from fabguard.store.eventlog import append_events
from fabguard.store.issuance_facts import lock_order
from fabguard.store.models import CertificateAuthority

# A rival transaction drew the same passcode (or named the same serial) first: the unique key stopped
# it, and the allocation is decided again, seeing the rival's.
_COLLISION_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Allocated:
    order_id: str
    identity: UnitIdentity
    replayed: bool

    def to_dict(self) -> dict[str, object]:
        return {"order_id": self.order_id, "replayed": self.replayed, **self.identity.to_dict()}


def allocate_unit(
    inst: Instance, fixture: FixtureFacts, order_id: OrderId, serial: Serial | None, key: Keyed | None = None
) -> Allocated | Answer:
    """Draw one unit's identities for ``order_id`` (201), or give a station-chosen serial's again (200).

    A refusal is recorded and raised (kept and answered, with a key)."""
    for attempt in range(_COLLISION_RETRIES):
        try:
            return _allocate_once(inst, fixture, order_id, serial, key)
        except IntegrityError:
            if attempt == _COLLISION_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _allocate_once(
    inst: Instance, fixture: FixtureFacts, order_id: OrderId, serial: Serial | None, key: Keyed | None
) -> Allocated | Answer:
    now = inst.clock()
    refused: Refusal | None = None
    with inst.db.transaction() as s:
        if key is not None and (stored := idempotency.take(s, inst, key, now)) is not None:
            return stored
        try:
            locked = order_found(order_id.value, lock_order(s, order_id.value))
            order = locked.facts
            pairs = [(order.product_id, serial.value)] if serial is not None else []
            draws = IdentityDraws.load(s, [order.product_id], [order.id], pairs)
            pool = draws.pool(order.product_id)
            matter = pool.matter if pool is not None else None
            request = AllocationRequest(
                fixture=fixture,
                order=order,
                now=now,
                pool_declared=pool is not None,
                draws_serial=pool is not None and pool.serials is not None,
                serial=serial.value if serial is not None else None,
                serial_order_id=draws.allocated_order(order.product_id, serial.value) if serial is not None else None,
                order_allocated=draws.held[order.id],
                exhausted=draws.exhausted(order.product_id, serial=serial is None) if pool is not None else None,
                matter_ids=(matter.vendor_id, matter.product_id) if matter is not None else None,
                matter_pai=_matter_pai(s, locked.issuing_ca) if matter is not None else None,
            )
            if decide_allocation(request) is AllocationDecision.REPLAY:
                assert serial is not None
                again = draws.existing(order.product_id, serial.value)
                assert again is not None
                done = Allocated(order.id, again, True)
                return idempotency.keep(s, key, 200, done.to_dict()) if key is not None else done
            value = serial.value if serial is not None else None
            identity, event = draws.draw(s, order.product_id, order.id, value, fixture.id, now)
            draws.write(s)
            append_events(s, [event])
            done = Allocated(order.id, identity, False)
            if key is not None:
                return idempotency.keep(s, key, 201, done.to_dict())
        except Refusal as refusal:
            event = refusal_event(
                "identity.refused",
                refusal,
                at=now,
                fixture_id=fixture.id,
                order_id=recorded_order_id(order_id.value),
                serial=serial.value if serial is not None else None,
                detail={"site_id": fixture.site_id},
            )
            append_events(s, [event])
            if key is not None:
                return idempotency.keep(s, key, refusal.status, refusal.to_dict())
            refused = refusal
    if refused is not None:
        raise refused
    return done


def _matter_pai(s: Session, ca_name: str) -> tuple[str, PaiIds] | None:
    """The order's issuing CA and what it fixes for the DACs it signs, if it is a Matter PAI."""
    row = s.get(CertificateAuthority, ca_name)
    ids = pai_ids(row) if row is not None else None
    return None if ids is None else (ca_name, ids)
