"""Drawing units' identities from their products' pools, inside the transaction that decides them.

``IdentityDraws`` is what one transaction (a provisioning group, or one allocation) knows of the pools:
it locks the pools of its products after the orders' locks (the same order everywhere, so two
transactions never wait on each other in a cycle), reads the allocations of its serials and how many
units' identities each order holds, counts its own draws against them, and writes them at the end: the
rows, one conditional ``UPDATE`` per pool (``store/identities.take_pool``) and one ``identity.allocated``
event per unit (a ledger entry, like every event). A passcode is drawn at random until it is one no unit
holds (the unique key stops a rival transaction's same draw: its group is decided again).
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fabguard.domain.identities import MacAddress
from fabguard.domain.identities.pools import IdentityPool
from fabguard.domain.issuance import IdentityFacts
from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    ProductId,
    SetupPasscode,
    Spake2pParameters,
    UnitCommissioning,
    VendorId,
)
from fabguard.store import identities as rows
from fabguard.store.eventlog import NewEvent
from fabguard.store.identity_models import UnitIdentityRow


@dataclass(frozen=True, slots=True)
class UnitIdentity:
    """One unit's identities as a station gets them (docs/identities.md, "What a station gets")."""

    serial: str
    serial_index: int | None
    mac_addresses: tuple[str, ...]
    matter: UnitCommissioning | None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "serial": self.serial,
            "serial_index": self.serial_index,
            "mac_addresses": list(self.mac_addresses),
            "matter": None,
        }
        if self.matter is not None:
            p, params = self.matter.payload, self.matter.parameters
            out["matter"] = {
                "vendor_id": p.vendor_id.value,
                "product_id": p.product_id.value,
                "discriminator": p.discriminator.value,
                "passcode": p.passcode.value,
                "flow": int(p.flow),
                "discovery": int(p.discovery),
                "salt": base64.b64encode(params.salt).decode(),
                "iterations": params.iterations,
                "verifier": base64.b64encode(self.matter.verifier).decode(),
                "qr_code": self.matter.qr_code,
                "manual_code": self.matter.manual_code,
            }
        return out

    def recorded(self) -> dict[str, object]:
        """What the ledger keeps of it: no passcode, salt or verifier (the label's secret), their digest's place
        taken by the discriminator and the codes' shape."""
        out: dict[str, object] = {"serial_index": self.serial_index, "mac_addresses": list(self.mac_addresses)}
        if self.matter is not None:
            p = self.matter.payload
            out["matter"] = {
                "vendor_id": p.vendor_id.value,
                "product_id": p.product_id.value,
                "discriminator": p.discriminator.value,
            }
        return out


def identity_of(row: UnitIdentityRow) -> UnitIdentity:
    """A stored allocation, as it was given."""
    macs: tuple[str, ...] = ()
    if row.mac_first is not None:
        macs = tuple(str(MacAddress(row.mac_first + i)) for i in range(row.mac_count))
    matter = None
    if row.passcode is not None:
        assert row.vendor_id is not None and row.matter_product_id is not None and row.discriminator is not None
        assert row.salt is not None and row.iterations is not None and row.verifier is not None
        payload = OnboardingPayload(
            VendorId(row.vendor_id),
            ProductId(row.matter_product_id),
            Discriminator(row.discriminator),
            SetupPasscode(row.passcode),
            flow=CommissioningFlow(row.flow or 0),
            discovery=DiscoveryCapability(row.discovery or 2),
        )
        params = Spake2pParameters(bytes.fromhex(row.salt), row.iterations)
        matter = UnitCommissioning(payload, params, bytes.fromhex(row.verifier))
    return UnitIdentity(row.serial, row.serial_index, macs, matter)


@dataclass
class IdentityDraws:
    """The pools one transaction draws from, and what it drew."""

    pools: dict[str, rows.LockedPool] = field(default_factory=dict)
    given: dict[tuple[str, str], UnitIdentityRow] = field(default_factory=dict)
    held: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    serials_taken: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    macs_taken: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    drawn: dict[tuple[str, str], UnitIdentity] = field(default_factory=dict)
    passcodes: set[int] = field(default_factory=set)
    units: list[dict[str, Any]] = field(default_factory=list)
    macs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(
        cls, s: Session, product_ids: Sequence[str], order_ids: Sequence[str], serials: Sequence[tuple[str, str]]
    ) -> IdentityDraws:
        """Lock the products' pools (after the orders' locks) and read what the decisions need."""
        draws = cls(rows.lock_pools(s, product_ids))
        if draws.pools:
            draws.given = rows.allocations(s, [p for p in serials if p[0] in draws.pools])
            draws.held.update(rows.order_allocations(s, order_ids))
        return draws

    def pool(self, product_id: str) -> IdentityPool | None:
        locked = self.pools.get(product_id)
        return None if locked is None else locked.pool

    def allocated_order(self, product_id: str, serial: str) -> str | None:
        row = self.given.get((product_id, serial))
        if row is not None:
            return row.order_id
        return None

    def exhausted(self, product_id: str, *, serial: bool) -> str | None:
        """Which of the product's pools a unit would draw from has no unit left (``serial``: it draws one)."""
        locked = self.pools[product_id]
        pool = locked.pool
        if (
            serial
            and pool.serials is not None
            and locked.next_serial + self.serials_taken[product_id] >= pool.serials.capacity
        ):
            return f"serial format {pool.serials}"
        if pool.macs is not None and locked.next_mac_unit + self.macs_taken[product_id] >= pool.macs.capacity:
            return f"MAC block {pool.macs}"
        return None

    def facts(self, product_id: str, order_id: str, serial: str) -> IdentityFacts:
        """The unit's identity facts at provisioning: drawn then if its product has pools and it has no allocation."""
        pool = self.pool(product_id)
        if pool is None:
            return IdentityFacts()
        allocated = self.allocated_order(product_id, serial)
        draws = allocated is None and pool.draws_at_provisioning
        return IdentityFacts(
            serials_required=pool.serials_required,
            allocated_order_id=allocated,
            draws=draws,
            order_allocated=self.held[order_id],
            exhausted=self.exhausted(product_id, serial=False) if draws else None,
            matter_ids=self._matter_ids(pool, product_id, serial, draws),
        )

    def _matter_ids(self, pool: IdentityPool, product_id: str, serial: str, draws: bool) -> tuple[int, int] | None:
        """The vendor and product ID of the unit's onboarding payload: its allocation's, or the pool's when
        it draws now (the DAC must name the same: ``domain/issuance.dac_matches_onboarding``)."""
        row = self.given.get((product_id, serial))
        if row is not None:
            if row.vendor_id is None or row.matter_product_id is None:
                return None
            return row.vendor_id, row.matter_product_id
        if draws and pool.matter is not None:
            return pool.matter.vendor_id, pool.matter.product_id
        return None

    def existing(self, product_id: str, serial: str) -> UnitIdentity | None:
        if (product_id, serial) in self.drawn:
            return self.drawn[(product_id, serial)]
        row = self.given.get((product_id, serial))
        return None if row is None else identity_of(row)

    def draw(
        self, s: Session, product_id: str, order_id: str, serial: str | None, fixture_id: str, now: datetime
    ) -> tuple[UnitIdentity, NewEvent]:
        """Draw a unit's identities (the serial too when ``serial`` is None) once the policies allowed it;
        its row and addresses join the writes, and the event to append is returned."""
        locked = self.pools[product_id]
        pool = locked.pool
        index = None
        if serial is None:
            index, serial = self._next_serial(s, product_id)
        addresses: tuple[MacAddress, ...] = ()
        mac_unit = None
        if pool.macs is not None:
            mac_unit = locked.next_mac_unit + self.macs_taken[product_id]
            addresses = pool.macs.addresses(mac_unit)
            self.macs_taken[product_id] += 1
        matter = self._commissioning(s, pool) if pool.matter is not None else None
        identity = UnitIdentity(serial, index, tuple(str(a) for a in addresses), matter)
        self._record(product_id, order_id, fixture_id, now, identity, mac_unit, addresses)
        event = NewEvent(
            "identity.allocated",
            now,
            actor=f"fixture:{fixture_id}",
            order_id=order_id,
            fixture_id=fixture_id,
            serial=serial,
            detail={"product_id": product_id, **identity.recorded()},
        )
        return identity, event

    def _next_serial(self, s: Session, product_id: str) -> tuple[int, str]:
        """The format's next serial no unit carries yet: one a station used as its own (before the pools, or
        with a format not required) is passed over, its counter spent (past the last: ``serial_range_exhausted``)."""
        locked = self.pools[product_id]
        assert locked.pool.serials is not None
        while True:
            index = locked.next_serial + self.serials_taken[product_id]
            serial = locked.pool.serials.serial(index).value
            self.serials_taken[product_id] += 1
            if (product_id, serial) not in self.drawn and not rows.serial_used(s, product_id, serial):
                return index, serial

    def _commissioning(self, s: Session, pool: IdentityPool) -> UnitCommissioning:
        assert pool.matter is not None
        m = pool.matter
        while True:
            passcode = SetupPasscode.random()
            if passcode.value not in self.passcodes and not rows.passcodes_taken(s, [passcode.value]):
                break
        self.passcodes.add(passcode.value)
        payload = OnboardingPayload(
            VendorId(m.vendor_id),
            ProductId(m.product_id),
            Discriminator.random(),
            passcode,
            flow=CommissioningFlow(m.flow),
            discovery=DiscoveryCapability(m.discovery),
        )
        return UnitCommissioning.of(payload, Spake2pParameters.random(m.iterations))

    def _record(
        self,
        product_id: str,
        order_id: str,
        fixture_id: str,
        now: datetime,
        identity: UnitIdentity,
        mac_unit: int | None,
        addresses: tuple[MacAddress, ...],
    ) -> None:
        self.drawn[(product_id, identity.serial)] = identity
        self.held[order_id] += 1
        c = identity.matter
        self.units.append(
            {
                "product_id": product_id,
                "serial": identity.serial,
                "order_id": order_id,
                "fixture_id": fixture_id,
                "serial_index": identity.serial_index,
                "mac_unit": mac_unit,
                "mac_first": addresses[0].value if addresses else None,
                "mac_count": len(addresses),
                "vendor_id": c.payload.vendor_id.value if c else None,
                "matter_product_id": c.payload.product_id.value if c else None,
                "flow": int(c.payload.flow) if c else None,
                "discovery": int(c.payload.discovery) if c else None,
                "passcode": c.payload.passcode.value if c else None,
                "discriminator": c.payload.discriminator.value if c else None,
                "salt": c.parameters.salt.hex() if c else None,
                "iterations": c.parameters.iterations if c else None,
                "verifier": c.verifier.hex() if c else None,
                "allocated_at": now,
            }
        )
        self.macs.extend({"address": a.value, "product_id": product_id, "serial": identity.serial} for a in addresses)

    def write(self, s: Session) -> None:
        """The drawn rows (in one order in every process), then each pool's counters in one conditional update."""
        rows.insert_allocations(
            s,
            sorted(self.units, key=lambda u: (u["product_id"], u["serial"])),
            sorted(self.macs, key=lambda m: m["address"]),
        )
        for product_id in sorted(set(self.serials_taken) | set(self.macs_taken)):
            serials, macs = self.serials_taken[product_id], self.macs_taken[product_id]
            if (serials or macs) and not rows.take_pool(s, product_id, serials, macs):
                raise AssertionError(
                    f"product {product_id}: {serials} serials and {macs} MAC units do not fit its pool"
                )
