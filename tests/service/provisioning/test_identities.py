"""Identity pools per product, allocated under the order's quota (issue 29, ADR 0014), on both engines:
an allocation draws the next serial, the unit's MAC addresses and its Matter onboarding data in one
transaction with its ledger event; provisioning carries them (or draws them, where the unit had none);
an exhausted pool, an order past its quota and a serial not allocated to the order are refused, drawing
nothing and recorded."""

from __future__ import annotations

import base64
import json
import random

import pytest
from sqlalchemy import func, select

from fabguard.api.parsing import unit_request
from fabguard.domain.errors import FabGuardError, Refusal
from fabguard.domain.identities import MacAddress, SerialFormat
from fabguard.domain.identities.pools import pool_from_json
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, ProductId, Serial, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki.matter import (
    CommissioningFlow,
    DiscoveryCapability,
    Discriminator,
    OnboardingPayload,
    SetupPasscode,
    Spake2pParameters,
    VendorId,
    spake2p_verifier,
)
from fabguard.pki.matter import ProductId as MatterProductId
from fabguard.service.catalog import fixtures, identity_pools, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import issuance, testrecords
from fabguard.service.provisioning.allocation import Allocated, allocate_unit
from fabguard.service.provisioning.unit_requests import Provisioned
from fabguard.store.identity_models import AllocatedMac, IdentityPoolRow, UnitIdentityRow
from fabguard.store.models import Event, Order
from tests.service.provisioning.test_quota_concurrency import assert_gap_free_events

PRODUCT, SITE = "sensor", "cm-a"
FIXTURE = FixtureFacts("fx-1", SITE, False)
DEVICES: dict[str, SimulatedDevice] = {}
POOL = {
    "serials": {"prefix": "ACME-", "width": 6, "required": True},
    "macs": {"prefix": "00-1B-63", "per_unit": 2, "first": 16, "count": 40},
    "matter": {"vendor_id": 0xFFF2, "product_id": 0x8001, "iterations": 1000},
}


def prepare(inst: Instance, pool: dict[str, object] | None = None, quota: int = 50) -> None:
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor", actor="test")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="test")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE.id), site_id=SiteId(SITE), actor="test")
    for order_id in ("po-a", "po-b"):
        orders.create_order(
            inst,
            order_id=OrderId(order_id),
            product_id=ProductId(PRODUCT),
            site_id=SiteId(SITE),
            quota=quota,
            actor="t",
        )
    if pool is not None:
        identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(pool), actor="test")


def allocate(inst: Instance, order: str = "po-a", serial: str | None = None) -> Allocated:
    done = allocate_unit(inst, FIXTURE, OrderId(order), Serial(serial) if serial else None)
    assert isinstance(done, Allocated)
    return done


def provision(inst: Instance, serial: str, order: str = "po-a") -> Provisioned:
    rng = random.Random(serial)
    results = testrecords.record_tests(inst, FIXTURE, [openhtf_record(serial, FIXTURE.id, fail=False, rng=rng)])
    assert results[0]["status"] == "stored"
    device = DEVICES.setdefault(serial, SimulatedDevice(serial))  # a retry presents the same key
    request = unit_request(order, serial, device.csr_pem(), max_csr_bytes=8192)
    return issuance.provision_unit(inst, FIXTURE, request)


def refusal_codes(inst: Instance) -> list[str | None]:
    with inst.db.read() as s:
        return list(s.execute(select(Event.code).where(Event.kind.like("%.refused")).order_by(Event.seq)).scalars())


def test_an_allocation_draws_the_next_serial_its_addresses_and_matter_data(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, POOL)
    first, second = allocate(inst), allocate(inst)
    fmt = SerialFormat("ACME-", 6)
    assert (first.identity.serial, second.identity.serial) == (fmt.serial(0).value, fmt.serial(1).value)
    base = MacAddress.parse("00:1B:63:00:00:00").value + 16
    assert first.identity.mac_addresses == (str(MacAddress(base)), str(MacAddress(base + 1)))
    assert second.identity.mac_addresses == (str(MacAddress(base + 2)), str(MacAddress(base + 3)))
    body = first.to_dict()
    matter = body["matter"]
    assert isinstance(matter, dict)
    # The codes and the verifier are those of the unit's own passcode, discriminator and salt.
    payload = OnboardingPayload(
        VendorId(0xFFF2),
        MatterProductId(0x8001),
        Discriminator(matter["discriminator"]),
        SetupPasscode(matter["passcode"]),
        flow=CommissioningFlow.STANDARD,
        discovery=DiscoveryCapability.BLE,
    )
    assert matter["qr_code"] == payload.qr_code() and matter["manual_code"] == payload.manual_code()
    params = Spake2pParameters(base64.b64decode(matter["salt"]), 1000)
    assert base64.b64decode(matter["verifier"]) == spake2p_verifier(payload.passcode, params)
    with inst.db.read() as s:
        events = list(s.execute(select(Event).where(Event.kind == "identity.allocated").order_by(Event.seq)).scalars())
        pool = s.get(IdentityPoolRow, PRODUCT)
        assert pool is not None and (pool.next_serial, pool.next_mac_unit) == (2, 2)
    assert [e.serial for e in events] == [first.identity.serial, second.identity.serial]
    recorded = json.loads(events[0].detail)
    assert recorded["mac_addresses"] == list(first.identity.mac_addresses)
    assert "passcode" not in json.dumps(recorded) and "verifier" not in json.dumps(recorded)  # the label's secret
    assert_gap_free_events(inst)  # each allocation is a ledger entry


def test_provisioning_carries_the_allocated_identity_and_a_retry_gets_it_again(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, POOL)
    given = allocate(inst)
    done = provision(inst, given.identity.serial)
    assert done.identity == given.identity and not done.replayed
    again = provision(inst, given.identity.serial)
    assert again.replayed and again.identity == given.identity
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(UnitIdentityRow)).scalar_one() == 1


def test_a_serial_never_allocated_or_allocated_to_another_order_is_refused(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, POOL)
    stranger = SerialFormat("ACME-", 6).serial(999).value  # in the format, never allocated
    with pytest.raises(Refusal) as never:
        provision(inst, stranger)
    assert never.value.code == "serial_not_allocated" and "never allocated" in never.value.message
    other = allocate(inst, "po-b")
    with pytest.raises(Refusal) as elsewhere:
        provision(inst, other.identity.serial, "po-a")
    assert elsewhere.value.code == "serial_not_allocated" and "po-b" in elsewhere.value.message
    assert refusal_codes(inst) == ["serial_not_allocated", "serial_not_allocated"]
    with inst.db.read() as s:
        assert s.get(Order, "po-a").used == 0  # type: ignore[union-attr]


def test_an_exhausted_pool_and_an_order_past_its_quota_refuse_drawing_nothing(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, {"macs": {"prefix": "00-1B-63", "per_unit": 2, "count": 7}}, quota=2)
    a = allocate(inst, serial="S-1")
    allocate(inst, serial="S-2")
    with pytest.raises(Refusal) as over:
        allocate(inst, serial="S-3")
    assert over.value.code == "quota_exhausted"
    allocate(inst, "po-b", serial="S-4")  # 7 addresses, 2 a unit: 3 units
    with pytest.raises(Refusal) as empty:
        allocate(inst, "po-b", serial="S-5")
    assert empty.value.code == "identity_pool_exhausted" and "MAC block" in empty.value.message
    assert allocate(inst, serial="S-1").identity == a.identity  # the same station serial: its identities again
    with pytest.raises(Refusal) as taken:
        allocate(inst, "po-b", serial="S-1")
    assert taken.value.code == "serial_already_allocated"
    with pytest.raises(Refusal) as drawn:
        allocate(inst, "po-b")
    assert drawn.value.code == "allocation_serial_invalid"
    assert refusal_codes(inst) == [
        "quota_exhausted",
        "identity_pool_exhausted",
        "serial_already_allocated",
        "allocation_serial_invalid",
    ]
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(AllocatedMac)).scalar_one() == 6
        assert s.get(IdentityPoolRow, PRODUCT).next_mac_unit == 3  # type: ignore[union-attr]


def test_a_unit_without_an_allocation_draws_its_addresses_at_provisioning(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, {"macs": {"prefix": "00-1B-63", "count": 2}, "matter": {"vendor_id": 0xFFF1, "product_id": 1}})
    one, two = provision(inst, "SN-1"), provision(inst, "SN-2")
    assert one.identity is not None and two.identity is not None
    assert one.identity.mac_addresses == ("00:1B:63:00:00:00",) and two.identity.mac_addresses == ("00:1B:63:00:00:01",)
    assert one.identity.matter is not None and two.identity.matter is not None
    assert one.identity.matter.payload.passcode != two.identity.matter.payload.passcode
    assert provision(inst, "SN-1").identity == one.identity  # a retry draws nothing
    with pytest.raises(Refusal) as empty:
        provision(inst, "SN-3")
    assert empty.value.code == "identity_pool_exhausted"
    with inst.db.read() as s:
        kinds = list(s.execute(select(Event.kind).where(Event.serial == "SN-1").order_by(Event.seq)).scalars())
        assert s.get(Order, "po-a").used == 2  # type: ignore[union-attr]
    assert [k for k in kinds if k != "test.recorded"] == ["identity.allocated", "unit.provisioned"]
    assert_gap_free_events(inst)


def test_pools_that_gave_identities_out_stay_and_blocks_never_overlap(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst, {"macs": {"prefix": "00-1B-63", "count": 100}})
    identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(POOL), actor="test")  # nothing given yet
    allocate(inst)
    with pytest.raises(FabGuardError) as in_use:
        identity_pools.set_pools(inst, ProductId(PRODUCT), pool_from_json(POOL), actor="test")
    assert in_use.value.code == "identity_pool_in_use"
    product_catalog.create_product(inst, product_id=ProductId("hub"), name="Hub", actor="test")
    with pytest.raises(FabGuardError) as overlap:
        identity_pools.set_pools(
            inst, ProductId("hub"), pool_from_json({"macs": {"prefix": "00-1B-63", "first": 50}}), actor="t"
        )
    assert overlap.value.code == "invalid_identity_pool" and "overlaps" in overlap.value.message
    apart = identity_pools.set_pools(
        inst, ProductId("hub"), pool_from_json({"macs": {"prefix": "00-1B-63", "first": 56}}), actor="t"
    )
    assert apart["macs"]["first_address"] == "00:1B:63:00:00:38"  # type: ignore[index]
    with pytest.raises(FabGuardError) as vendor:
        identity_pools.set_pools(
            inst, ProductId("hub"), pool_from_json({"matter": {"vendor_id": 0xFFFF, "product_id": 1}}), actor="t"
        )
    assert vendor.value.code == "invalid_identity_pool"


def test_a_drawn_serial_passes_over_one_a_unit_already_carries(any_instance: Instance) -> None:
    inst = any_instance
    prepare(inst)
    fmt = SerialFormat("OWN-", 3)
    provision(inst, fmt.serial(0).value)  # provisioned before the product had pools
    identity_pools.set_pools(
        inst, ProductId(PRODUCT), pool_from_json({"serials": {"prefix": "OWN-", "width": 3}}), actor="test"
    )
    provision(inst, fmt.serial(2).value)  # a station's own serial of the format (not required)
    assert [allocate(inst).identity.serial for _ in range(3)] == [fmt.serial(n).value for n in (1, 3, 4)]
    with inst.db.read() as s:
        assert s.get(IdentityPoolRow, PRODUCT).next_serial == 5  # type: ignore[union-attr]
