"""Identity pools over HTTPS: an engineer declares them, a fixture (mTLS) allocates a unit's identities and
gets them again in its provisioning answer; errors answer ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import random

import pytest

from fabguard.domain.identities import SerialFormat
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from tests.support import World

POOL = {
    "serials": {"prefix": "ACME-26-", "width": 6, "required": True},
    "macs": {"prefix": "00-1B-63", "per_unit": 2, "count": 6},
    "matter": {"vendor_id": 65522, "product_id": 32769, "iterations": 1000},
}


def test_an_engineer_declares_pools_and_a_fixture_allocates_then_provisions(any_world: World) -> None:
    world = any_world
    order = world.order(quota=5)
    with world.admin() as admin:
        declared = admin.put("/api/v1/products/sensor/identities", json=POOL)
        assert declared.status_code == 200, declared.text
        assert declared.json()["macs"]["units"] == 3 and declared.json()["serials"]["required"] is True
        bad = admin.put("/api/v1/products/sensor/identities", json={"macs": {"prefix": "01-1B-63"}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_mac_block"
        empty = admin.put("/api/v1/products/sensor/identities", json={})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_identity_pool"
    fx = world.fixture("fx-1")
    given = fx.allocate(order, idempotency_key="unit-1")
    assert given["serial"] == SerialFormat("ACME-26-", 6).serial(0).value
    assert given["mac_addresses"] == ["00:1B:63:00:00:00", "00:1B:63:00:00:01"]
    assert given["matter"]["qr_code"].startswith("MT:") and len(given["matter"]["manual_code"]) == 11
    assert fx.allocate(order, idempotency_key="unit-1") == given  # a resend: the same identities, none drawn

    serial = given["serial"]
    fx.upload_test_records([openhtf_record(serial, "fx-1", fail=False, rng=random.Random(1))])
    issued = fx.provision(order, serial, SimulatedDevice(serial).csr_pem())
    assert issued.identity is not None
    assert {k: issued.identity[k] for k in ("serial", "mac_addresses", "matter")} == {
        k: given[k] for k in ("serial", "mac_addresses", "matter")
    }

    stranger = SerialFormat("ACME-26-", 6).serial(7).value
    fx.upload_test_records([openhtf_record(stranger, "fx-1", fail=False, rng=random.Random(2))])
    with pytest.raises(FabGuardClientError) as refused:
        fx.provision(order, stranger, SimulatedDevice(stranger).csr_pem())
    assert (refused.value.status, refused.value.code) == (409, "serial_not_allocated")
    fx.allocate(order)
    fx.allocate(order)
    with pytest.raises(FabGuardClientError) as empty_pool:
        fx.allocate(order)
    assert (empty_pool.value.status, empty_pool.value.code) == (409, "identity_pool_exhausted")
    with world.admin() as admin:
        pools = admin.get("/api/v1/products/sensor/identities").json()
        assert (pools["next_serial"], pools["next_mac_unit"], pools["units_allocated"]) == (3, 3, 3)
        again = admin.put("/api/v1/products/sensor/identities", json=POOL)
        assert again.status_code == 409 and again.json()["error"]["code"] == "identity_pool_in_use"
        events = admin.get("/api/v1/events", params={"kind": "identity.refused"}).json()
        assert [e["code"] for e in events] == ["identity_pool_exhausted"]


def test_a_product_without_pools_refuses_an_allocation(world: World) -> None:
    order = world.order(quota=5)
    fx = world.fixture("fx-1")
    with pytest.raises(FabGuardClientError) as refused:
        fx.allocate(order, "SN-1")
    assert (refused.value.status, refused.value.code) == (409, "identity_pool_missing")
    with pytest.raises(FabGuardClientError) as unknown:
        fx.allocate("po-nope", "SN-1")
    assert unknown.value.code == "order_not_found"
