"""The test gate is bound to where the unit is built: only records uploaded by fixtures of the order's
site decide that order's units; a record from elsewhere is kept and visible but decides nothing; the
station of a record is the fixture that uploaded it, whatever the record's body claims."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.catalog import orders
from fabguard.service.core import events
from tests.api.test_est import curl_est, openssl_csr
from tests.support import World, tested_device


def _sites(world: World) -> tuple[FixtureClient, FixtureClient]:
    return world.fixture("fx-a", "cm-a"), world.fixture("fx-b", "cm-b")


def _refused(client: FixtureClient, order: str, device: SimulatedDevice) -> FabGuardClientError:
    with pytest.raises(FabGuardClientError) as refused:
        client.provision(order, device.serial, device.csr_pem())
    return refused.value


def test_a_unit_tested_only_at_another_site_is_refused_as_untested(any_world: World) -> None:
    order = any_world.order(quota=3, site="cm-a")
    fx_a, fx_b = _sites(any_world)
    device = tested_device(fx_b, "SN0001")  # a PASS, but at site B

    refused = _refused(fx_a, order, device)

    assert (refused.status, refused.code) == (409, "test_missing")
    assert "cm-a" in refused.message
    assert orders.get_order(any_world.inst, order).used == 0
    with any_world.admin() as admin:
        kept = admin.get("/api/v1/units/SN0001/test-records").json()
    assert [(r["fixture_id"], r["site_id"], r["outcome"]) for r in kept] == [("fx-b", "cm-b", "PASS")]


def test_a_later_pass_at_another_site_does_not_open_a_unit_that_failed_here(any_world: World) -> None:
    order = any_world.order(quota=3, site="cm-a")
    fx_a, fx_b = _sites(any_world)
    device = tested_device(fx_a, "SN0002", passed=False)
    tested_device(fx_b, "SN0002", passed=True, seed=1)

    refused = _refused(fx_a, order, device)

    assert (refused.status, refused.code) == (409, "test_failed")
    assert orders.get_order(any_world.inst, order).used == 0


def test_a_later_fail_at_another_site_does_not_block_a_unit_that_passed_here(any_world: World) -> None:
    order_a = any_world.order(quota=3, site="cm-a")
    order_b = any_world.order(quota=3, site="cm-b")
    fx_a, fx_b = _sites(any_world)
    at_a = tested_device(fx_a, "SN0003")
    tested_device(fx_b, "SN0003", passed=False, seed=1)
    at_b = tested_device(fx_b, "SN0004")
    tested_device(fx_a, "SN0004", passed=False, seed=2)

    assert not fx_a.provision(order_a, "SN0003", at_a.csr_pem()).replayed
    assert not fx_b.provision(order_b, "SN0004", at_b.csr_pem()).replayed
    assert orders.get_order(any_world.inst, order_a).used == 1
    assert orders.get_order(any_world.inst, order_b).used == 1


def test_the_station_of_a_record_is_the_fixture_that_uploaded_it(any_world: World) -> None:
    order = any_world.order(quota=3, site="cm-a")
    fx_a, fx_b = _sites(any_world)
    # Site B's fixture claims to be site A's station.
    fx_b.upload_test_record(openhtf_record("SN0005", "fx-a", fail=False, rng=random.Random(5)))

    refused = _refused(fx_a, order, SimulatedDevice("SN0005"))

    assert refused.code == "test_missing"
    with any_world.admin() as admin:
        (kept,) = admin.get("/api/v1/units/SN0005/test-records").json()
    assert (kept["station_id"], kept["fixture_id"], kept["site_id"]) == ("fx-b", "fx-b", "cm-b")
    assert kept["declared_station_id"] == "fx-a"
    (recorded,) = events.list_events(any_world.inst, kind="test.recorded")
    assert recorded["fixture_id"] == "fx-b"
    assert recorded["detail"]["station_id"] == "fx-b"
    assert recorded["detail"]["declared_station_id"] == "fx-a"
    assert recorded["detail"]["site_id"] == "cm-b"


def test_est_enrolment_at_one_site_is_not_opened_by_a_pass_at_another(world: World, tmp_path: Path) -> None:
    order = world.order(quota=2, site="cm-a", order_id="po-est")
    fx_a, fx_b = _sites(world)
    tested_device(fx_b, "SN-EST-B")
    csr, _ = openssl_csr(tmp_path, "SN-EST-B")

    status, payload = curl_est(world, fx_a.credentials.fixture_id, f"/{order}/simpleenroll", csr)

    assert status == 409 and json.loads(payload)["error"]["code"] == "test_missing"
    tested_device(fx_a, "SN-EST-B")
    status, payload = curl_est(world, fx_a.credentials.fixture_id, f"/{order}/simpleenroll", csr)
    assert status == 200, payload
    assert orders.get_order(world.inst, order).used == 1
