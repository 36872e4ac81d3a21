"""Whether a station may draw a unit's identities before provisioning it (``POST /api/v1/units/allocate``).

Pure policies over facts the service reads under the order's and the pool's row locks, in a fixed order
(the first refusal names the answer), like the issuance policies they share the fixture and order rules
with. A station-chosen serial already allocated to the same order is given its identities again (a
retry); a drawn serial is new on every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from fabguard.domain.errors import Refusal
from fabguard.domain.identities.matter_ids import PaiIds, dac_agrees_with_onboarding
from fabguard.domain.issuance import FixtureFacts, OrderFacts, active_fixture, order_holds_identities, pool_left
from fabguard.domain.values import OrderState


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """One unit's allocation: who asks, on which order (as its lock read it), the product's pools (None:
    it declares none; else whether they draw the serial), the station's serial if it sent one and the
    order it was already allocated to, how many units' identities the order holds, and which pool has
    none left; for a Matter pool, the vendor and product ID it draws (``matter_ids``) and what the order's
    PAI fixes for the unit's DAC (``matter_pai``; None: its issuing CA is no Matter PAI)."""

    fixture: FixtureFacts
    order: OrderFacts
    now: datetime
    pool_declared: bool
    draws_serial: bool
    serial: str | None
    serial_order_id: str | None
    order_allocated: int
    exhausted: str | None
    matter_ids: tuple[int, int] | None = None
    matter_pai: tuple[str, PaiIds] | None = None


AllocationPolicy = Callable[[AllocationRequest], None]


def fixture_may_ask(r: AllocationRequest) -> None:
    active_fixture(r.fixture)
    if r.fixture.site_id != r.order.site_id:
        raise Refusal(
            "wrong_site",
            f"fixture {r.fixture.id} belongs to site {r.fixture.site_id}, order {r.order.id} is for site {r.order.site_id}",
        )


def order_open(r: AllocationRequest) -> None:
    o = r.order
    if o.state is not OrderState.ACTIVE:
        raise Refusal("order_inactive", f"order {o.id} is {o.state.value}")
    if r.now < o.valid_from:
        raise Refusal("order_not_yet_valid", f"order {o.id} is valid from {o.valid_from.isoformat()}")
    if o.valid_until is not None and r.now >= o.valid_until:
        raise Refusal("order_expired", f"order {o.id} expired at {o.valid_until.isoformat()}")


def pool_declared(r: AllocationRequest) -> None:
    if not r.pool_declared:
        raise Refusal("identity_pool_missing", f"product {r.order.product_id} declares no identity pool")


def serial_as_the_pool_says(r: AllocationRequest) -> None:
    """The pool draws the serial (send none), or the station names it (a product without a serial format)."""
    if r.draws_serial and r.serial is not None:
        raise Refusal(
            "allocation_serial_invalid",
            f"product {r.order.product_id} draws its serials from its pool: send no serial",
        )
    if not r.draws_serial and r.serial is None:
        raise Refusal(
            "allocation_serial_invalid",
            f"product {r.order.product_id} has no serial format: send the unit's serial",
        )


def serial_free(r: AllocationRequest) -> None:
    if r.serial_order_id is not None and r.serial_order_id != r.order.id:
        raise Refusal("serial_already_allocated", f"serial {r.serial} was allocated to order {r.serial_order_id}")


def within_quota(r: AllocationRequest) -> None:
    order_holds_identities(r.order.id, r.order.quota, r.order_allocated)


def pools_left(r: AllocationRequest) -> None:
    pool_left(r.order.product_id, r.exhausted)


def onboarding_fits_the_pai(r: AllocationRequest) -> None:
    """No onboarding data (a label to print) for a unit whose DAC, from the order's PAI, would name another
    vendor or product: provisioning would refuse it (``matter_ids_mismatch``)."""
    if r.matter_pai is not None:
        ca_name, pai = r.matter_pai
        unit = r.serial or f"the next unit of order {r.order.id}"
        dac_agrees_with_onboarding(unit, ca_name, pai, r.matter_ids)


ALLOCATION_POLICIES: tuple[AllocationPolicy, ...] = (
    fixture_may_ask,
    order_open,
    pool_declared,
    serial_as_the_pool_says,
    serial_free,
    within_quota,
    pools_left,
    onboarding_fits_the_pai,
)
# The same station-chosen serial on the same order again: its identities, once the fixture may ask.
RETRY_POLICIES: tuple[AllocationPolicy, ...] = (fixture_may_ask,)


class AllocationDecision(Enum):
    ALLOCATE = "allocate"
    REPLAY = "replay"


def decide_allocation(r: AllocationRequest) -> AllocationDecision:
    """A retry (a station-chosen serial its order already holds) is replayed; anything else runs every policy."""
    retry = r.serial is not None and r.serial_order_id == r.order.id
    for policy in RETRY_POLICIES if retry else ALLOCATION_POLICIES:
        policy(r)
    return AllocationDecision.REPLAY if retry else AllocationDecision.ALLOCATE
