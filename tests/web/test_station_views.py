"""The dashboard's station and line view over the API: per-fixture figures, distributions against
limits, the units behind a failing step, and an order's capability over its own units only."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fabguard.domain.values import Role, SiteId
from fabguard.fixture.openhtf_records import DEFAULT_PROCEDURE, MeasurementSpec, openhtf_record
from fabguard.service.access import tokens
from tests.support import World, tested_device

# A second product's extra measurement, tested at the same site as the first order's units.
RADIO = MeasurementSpec("radio", "tx_power_dbm_b", 10.0, 0.2, 9.0, 11.0, "dBm")


def _get(world: World, path: str, token: str | None = None, **params: str) -> tuple[int, Any]:
    with world.admin() as admin:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = admin.get(path, params=params, headers=headers)
    return response.status_code, response.json()


def test_stations_lines_pareto_distribution_and_failing_units(any_world: World) -> None:
    order = any_world.order(20, order_id="po-st")
    f1, f2 = any_world.fixture("f1"), any_world.fixture("f2")
    good = [tested_device(f1, f"SN10{i}", seed=i) for i in range(4)]
    bad = tested_device(f2, "SN200", passed=False, seed=7)
    f2.upload_test_record(openhtf_record("SN200", "f2", fail=False, rng=random.Random(70)))
    scrapped = tested_device(f2, "SN201", passed=False, seed=8)
    for d in [*good, bad]:
        (f1 if d in good else f2).provision(order, d.serial, d.csr_pem())

    status, view = _get(any_world, "/api/v1/stats/stations")
    assert status == 200, view
    by_fixture = {r["fixture_id"]: r for r in view["fixtures"]}
    assert set(by_fixture) == {"f1", "f2"}
    assert by_fixture["f1"]["yield"]["units_tested"] == 4 and by_fixture["f1"]["yield"]["first_pass_yield"] == 1.0
    assert by_fixture["f1"]["provisioned"] == 4 and by_fixture["f1"]["tests"] == 4
    f2_yield = by_fixture["f2"]["yield"]
    assert (f2_yield["units_tested"], f2_yield["tests"], f2_yield["first_pass"], f2_yield["final_pass"]) == (2, 3, 0, 1)
    assert f2_yield["retest_rate"] == 0.5 and by_fixture["f2"]["provisioned"] == 1
    assert [(r["site_id"], r["yield"]["units_tested"], r["provisioned"]) for r in view["lines"]] == [("cm-a", 6, 5)]
    assert sum(f["failures"] for f in view["failures"]) == 2

    # From the Pareto's top step to the units that failed it.
    top = view["failures"][0]
    status, failing = _get(
        any_world, "/api/v1/stats/failing-units", phase=top["phase"], measurement=top["measurement"] or ""
    )
    assert status == 200
    assert {u["serial"] for u in failing["units"]} <= {"SN200", "SN201"} and failing["units"]
    assert all(u["outcome"] == "FAIL" for u in failing["units"])

    # A distribution against its limits: every test's value, those past the limits counted apart.
    spec = next(s for s in DEFAULT_PROCEDURE if s.name == "vcc_3v3")
    status, hist = _get(any_world, "/api/v1/stats/distribution", phase=spec.phase, name=spec.name)
    assert status == 200, hist
    assert hist["n"] == 7 and sum(hist["counts"]) == 7 and (hist["lower"], hist["upper"]) == (spec.lower, spec.upper)
    assert hist["edges"][0] <= spec.lower and hist["edges"][-1] >= spec.upper
    status, one = _get(any_world, "/api/v1/stats/distribution", phase=spec.phase, name=spec.name, fixture="f1")
    assert one["n"] == 4
    assert scrapped.serial == "SN201"


def test_an_orders_capability_counts_its_own_units_only(any_world: World) -> None:
    """Two orders at one site: the second's units carry a measurement the first's never had; the first
    order's page shows only its own measurements, each once per unit."""
    first, second = any_world.order(5, order_id="po-one"), any_world.order(5, order_id="po-two")
    line = any_world.fixture("f1")
    mine = [tested_device(line, f"SN30{i}", seed=i) for i in range(3)]
    for d in mine:
        line.provision(first, d.serial, d.csr_pem())
    theirs = tested_device(line, "SN400", seed=40)
    line.upload_test_record(
        openhtf_record("SN400", "f1", fail=False, rng=random.Random(41), procedure=(*DEFAULT_PROCEDURE, RADIO))
    )
    line.provision(second, theirs.serial, theirs.csr_pem())

    status, one = _get(any_world, f"/api/v1/stats/orders/{first}")
    assert status == 200
    assert {c["name"]: c["n"] for c in one["capability"]} == {m.name: 3 for m in DEFAULT_PROCEDURE}
    status, two = _get(any_world, f"/api/v1/stats/orders/{second}")
    assert {c["name"]: c["n"] for c in two["capability"]} == {m.name: 1 for m in (*DEFAULT_PROCEDURE, RADIO)}


def test_an_operator_reads_its_own_sites_stations_only(any_world: World) -> None:
    any_world.order(5, order_id="po-a")
    tested_device(any_world.fixture("fa"), "SN500", seed=1)
    tested_device(any_world.fixture("fb", site="cm-b"), "SN600", seed=2)
    _, operator = tokens.create_token(
        any_world.inst, name="cm-a op", role=Role.OPERATOR, site_id=SiteId("cm-a"), actor="t"
    )
    status, view = _get(any_world, "/api/v1/stats/stations", operator)
    assert status == 200 and {r["fixture_id"] for r in view["fixtures"]} == {"fa"}
    status, other = _get(any_world, "/api/v1/stats/stations", operator, site="cm-b")
    assert (status, other["error"]["code"]) == (404, "site_not_found")
    status, hist = _get(any_world, "/api/v1/stats/distribution", operator, phase="power", name="vcc_3v3", fixture="fb")
    assert status == 200 and hist["n"] == 0


@pytest.mark.parametrize("path", ["/api/v1/stats/stations", "/api/v1/stats/distribution"])
def test_a_window_that_ends_before_it_starts_is_refused(any_world: World, path: str) -> None:
    status, body = _get(
        any_world, path, since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z", phase="p", name="n"
    )
    assert (status, body["error"]["code"]) == (422, "invalid_window")
