"""Production figures over a window (``GET /api/v1/stats/production``) agree with what the line did."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import DEFAULT_PROCEDURE, openhtf_record
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.service.analytics import dashboard_queries
from fabguard.service.catalog import orders, product_catalog
from tests.support import World, tested_device


def _production(world: World, **params: str) -> dict[str, Any]:
    with world.admin() as admin:
        response = admin.get("/api/v1/stats/production", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _failing_measurement(seed: int) -> str:
    """The measurement ``openhtf_record(fail=True, rng=Random(seed))`` puts out of limits (its first draw)."""
    return DEFAULT_PROCEDURE[random.Random(seed).randrange(len(DEFAULT_PROCEDURE))].name


def _retested(client: FixtureClient, serial: str, *, seed: int) -> SimulatedDevice:
    """A unit whose first test failed and whose retest (after repair) passed."""
    device = tested_device(client, serial, passed=False, seed=seed)
    client.upload_test_record(
        openhtf_record(serial, client.credentials.fixture_id, fail=False, rng=random.Random(seed))
    )
    return device


def test_yield_counts_units_failing_first_and_passing_on_retest(any_world: World) -> None:
    order = any_world.order(10, order_id="po-yield")
    client = any_world.fixture("f1")
    devices = [tested_device(client, f"SN000000{i}", seed=i) for i in range(1, 4)]
    devices += [_retested(client, "SN0000004", seed=41), _retested(client, "SN0000005", seed=52)]
    for d in devices:
        client.provision(order, d.serial, d.csr_pem())

    figures = _production(any_world)
    assert figures["provisioned"] == 5 and figures["lag"] == 0
    assert figures["tests"]["total"] == 7 and figures["tests"]["by_outcome"] == {"FAIL": 2, "PASS": 5}
    assert figures["yield"] == {
        "units_tested": 5,
        "tests": 7,
        "first_pass": 3,
        "final_pass": 5,
        "retested": 2,
        "first_pass_yield": 0.6,
        "final_yield": 1.0,
        "retest_rate": 0.4,
        "scrapped": 0,
        "scrap_rate": 0.0,
    }
    assert figures["throughput_per_hour"] == pytest.approx(5 / figures["window"]["hours"])
    # Each failing record has exactly one measurement out of its limits: the Pareto names it.
    expected = Counter(_failing_measurement(seed) for seed in (41, 52))
    assert {f["measurement"]: f["failures"] for f in figures["failures"]} == dict(expected)
    assert figures["failures"][-1]["cumulative_share"] == pytest.approx(1.0)
    assert sum(f["share"] for f in figures["failures"]) == pytest.approx(1.0)
    # Capability counts every value of a measurement, passing and failing: one per record.
    assert {c["name"]: c["n"] for c in figures["capability"]} == {m.name: 7 for m in DEFAULT_PROCEDURE}
    vcc = next(c for c in figures["capability"] if c["name"] == "vcc_3v3")
    assert (vcc["lower"], vcc["upper"]) == (3.2, 3.4)
    # The same figures for the order alone: all five units were provisioned on it.
    assert _production(any_world, order=order)["yield"] == figures["yield"]


def test_provisioned_units_and_refusals_follow_the_order_and_product_filters(any_world: World) -> None:
    product_catalog.create_product(any_world.inst, product_id=ProductId("meter"), name="Meter", actor="test")
    sensor = any_world.order(2, order_id="po-sensor")
    meter = orders.create_order(
        any_world.inst,
        product_id=ProductId("meter"),
        site_id=SiteId("cm-a"),
        quota=5,
        actor="test",
        order_id=OrderId("po-meter"),
    ).id
    client = any_world.fixture("f1")
    for i, order in enumerate([sensor, sensor, meter, meter, meter]):
        d = tested_device(client, f"SN100000{i}", seed=i)
        client.provision(order, d.serial, d.csr_pem())
    over = tested_device(client, "SN1000009", seed=9)
    with pytest.raises(FabGuardClientError, match="quota_exhausted"):
        client.provision(sensor, over.serial, over.csr_pem())
    untested = SimulatedDevice("SN1000010")
    with pytest.raises(FabGuardClientError, match="test_missing"):
        client.provision(meter, untested.serial, untested.csr_pem())

    everything = _production(any_world)
    assert everything["provisioned"] == 5
    assert everything["refusals"] == {"unit.refused": {"quota_exhausted": 1, "test_missing": 1}}
    by_order = _production(any_world, order=sensor)
    assert by_order["provisioned"] == 2 and by_order["scope"]["order_id"] == sensor
    assert by_order["refusals"] == {"unit.refused": {"quota_exhausted": 1}}
    assert by_order["yield"]["units_tested"] == 2 and by_order["yield"]["final_pass"] == 2
    by_product = _production(any_world, product="meter")
    assert by_product["provisioned"] == 3
    assert by_product["refusals"] == {"unit.refused": {"test_missing": 1}}
    assert by_product["yield"]["units_tested"] == 3
    assert _production(any_world, product="sensor")["provisioned"] == 2
    # Tests belong to the station, whatever order the unit lands on: the order filter leaves them whole.
    assert by_order["tests"]["total"] == everything["tests"]["total"] == 6


def test_a_window_that_excludes_everything_gives_zeros(world: World) -> None:
    order = world.order(5)
    client = world.fixture("f1")
    d = tested_device(client, "SN2000001", passed=False, seed=3)
    with pytest.raises(FabGuardClientError, match="test_failed"):
        client.provision(order, d.serial, d.csr_pem())
    now = datetime.now(UTC)
    empty = _production(
        world, since=(now - timedelta(days=10)).isoformat(), until=(now - timedelta(days=9)).isoformat()
    )
    assert empty["window"]["hours"] == pytest.approx(24.0)
    assert (empty["provisioned"], empty["throughput_per_hour"]) == (0, 0.0)
    assert empty["tests"] == {"total": 0, "by_outcome": {}, "per_hour": 0.0}
    assert empty["yield"]["units_tested"] == 0 and empty["yield"]["first_pass_yield"] is None
    assert (empty["refusals"], empty["failures"], empty["capability"]) == ({}, [], [])
    # The default window (the last 8 h) holds it all.
    recent = _production(world)
    assert recent["refusals"] == {"unit.refused": {"test_failed": 1}}
    assert recent["tests"]["by_outcome"] == {"FAIL": 1}


def test_site_and_fixture_filters_separate_two_stations(any_world: World) -> None:
    a, b = any_world.fixture("f-a", site="cm-a"), any_world.fixture("f-b", site="cm-b")
    order_b = any_world.order(5, site="cm-b", order_id="po-b")
    for i in range(3):
        tested_device(a, f"SN300000{i}", seed=i)
    d = _retested(b, "SN3000010", seed=7)
    b.provision(order_b, d.serial, d.csr_pem())

    at_a = _production(any_world, site="cm-a")
    assert at_a["tests"]["by_outcome"] == {"PASS": 3} and at_a["provisioned"] == 0
    assert at_a["yield"]["units_tested"] == 3 and at_a["yield"]["first_pass_yield"] == 1.0
    assert at_a["failures"] == [] and {c["n"] for c in at_a["capability"]} == {3}
    at_b = _production(any_world, site="cm-b")
    assert at_b["tests"]["by_outcome"] == {"FAIL": 1, "PASS": 1} and at_b["provisioned"] == 1
    assert at_b["yield"]["retested"] == 1 and at_b["yield"]["first_pass_yield"] == 0.0
    assert [f["measurement"] for f in at_b["failures"]] == [_failing_measurement(7)]
    assert {c["n"] for c in at_b["capability"]} == {2}
    by_fixture = _production(any_world, fixture="f-b")
    for key in ("provisioned", "tests", "yield", "refusals", "failures", "capability"):
        assert by_fixture[key] == at_b[key], key
    assert _production(any_world, site="cm-a", fixture="f-b")["tests"]["total"] == 0


def test_figures_agree_with_a_simulated_line_with_failures_and_retests(world: World) -> None:
    order = world.order(40, order_id="po-line")
    config = LineConfig(order, units=30, fail_rate=0.3, retest_rate=1.0, seed=11)
    with ProductionLine([world.credentials("f1"), world.credentials("f2")], config) as line:
        report = line.run()
    assert report.tests_failed > 0
    figures = dashboard_queries.production(world.inst, order_id=order)
    assert figures["provisioned"] == report.provisioned == 30
    assert figures["tests"]["total"] == report.tests_uploaded
    assert figures["tests"]["by_outcome"].get("FAIL", 0) == report.tests_failed
    assert figures["yield"]["units_tested"] == 30 and figures["yield"]["final_pass"] == 30
    assert figures["yield"]["tests"] == report.tests_uploaded
    assert sum(f["failures"] for f in figures["failures"]) == report.tests_failed
    assert all(c["n"] == report.tests_uploaded for c in figures["capability"])


def test_bad_input_is_a_4xx_in_the_error_shape(world: World) -> None:
    with world.admin() as admin:
        for params, status, code in [
            ({"since": "yesterday"}, 422, "invalid_time"),
            ({"since": "2027-01-01T00:00:00"}, 422, "invalid_time"),
            ({"until": "2020-01-01T00:00:00+00:00", "since": "2021-01-01T00:00:00+00:00"}, 422, "invalid_window"),
            ({"since": "1990-01-01T00:00:00+00:00"}, 422, "invalid_window"),
            ({"until": "0001-01-01T00:00:00+00:00"}, 422, "invalid_window"),
            ({"order": "x" * 64}, 422, "invalid_request"),
            ({"order": "po-missing"}, 404, "order_not_found"),
        ]:
            response = admin.get("/api/v1/stats/production", params=params)
            assert response.status_code == status, (params, response.text)
            body = response.json()
            assert body["error"]["code"] == code and body["error"]["message"], (params, body)
        anonymous = admin.get("/api/v1/stats/production", headers={"Authorization": ""})
        spec = admin.get("/openapi.json").json()
    assert anonymous.status_code == 401
    route = spec["paths"]["/api/v1/stats/production"]["get"]
    assert route["tags"] == ["analytics"] and "Pareto" in route["description"]
    assert {p["name"] for p in route["parameters"]} == {"since", "until", "product", "order", "site", "fixture"}
