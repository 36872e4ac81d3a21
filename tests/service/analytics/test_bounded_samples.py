"""Figures drawn from a bounded sample of stored records say so (issue 28 item 5): the distribution,
the units that failed a step and an order's capability read at most their limit of the newest records
or units, whatever the database holds, and their answers carry how many were read, the limit and
``sampled`` (more may exist than were read), so the dashboard never shows a partial figure as whole."""

from __future__ import annotations

import json
import random

import pytest

from fabguard.service.analytics import dashboard_queries, record_samples, stations
from fabguard_station.openhtf_records import openhtf_record
from tests.support import World, tested_device


def _line(world: World) -> str:
    order = world.order(20, order_id="po-s")
    line = world.fixture("f1")
    for i in range(5):
        device = tested_device(line, f"SN{i}", seed=i)
        line.provision(order, device.serial, device.csr_pem())
    for i in range(5, 8):
        tested_device(line, f"SN{i}", passed=False, seed=i)
    return order


def test_the_samples_are_bounded_and_say_so(any_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    order = _line(any_world)
    inst = any_world.inst
    whole = stations.distribution(inst, phase="power_rails", name="vcc_3v3")
    assert (whole["records_read"], whole["n"], whole["sampled"]) == (8, 8, False)
    failing = stations.failing_units(inst, phase="power_rails", measurement=None)
    assert (failing["records_read"], failing["sampled"]) == (3, False)
    sample = dashboard_queries.order_stats(inst, order)["capability_sample"]
    assert sample == {"units_read": 5, "records_read": 5, "limit": record_samples.SAMPLE, "sampled": False}

    monkeypatch.setattr(stations, "SAMPLE", 3)
    monkeypatch.setattr(stations, "FAILING_SCAN", 2)
    monkeypatch.setattr(record_samples, "SAMPLE", 4)
    part = stations.distribution(inst, phase="power_rails", name="vcc_3v3")
    assert (part["records_read"], part["n"], part["sample_limit"], part["sampled"]) == (3, 3, 3, True)
    failing = stations.failing_units(inst, phase="power_rails", measurement=None)
    assert (failing["records_read"], failing["scan_limit"], failing["sampled"]) == (2, 2, True)
    assert {u["serial"] for u in failing["units"]} <= {"SN6", "SN7"}  # the newest failed records only
    order_page = dashboard_queries.order_stats(inst, order)
    assert order_page["capability_sample"] == {"units_read": 4, "records_read": 4, "limit": 4, "sampled": True}
    assert {c["n"] for c in order_page["capability"]} == {4}


def test_a_value_near_the_floats_range_leaves_figures_out_instead_of_failing(any_world: World) -> None:
    """A station reporting 1e300 (finite, and valid JSON) made the distribution and the order page's capability
    answer 500 (an overflow squaring it); now the figures that cannot be computed are None, the rest stand."""
    order = any_world.order(5, order_id="po-big")
    line = any_world.fixture("f1")
    for i, value in enumerate([1e300, 3.3, -1e300]):
        record = openhtf_record(f"SN-B{i}", "f1", fail=False, rng=random.Random(i))
        record["phases"][0]["measurements"]["vcc_3v3"]["measured_value"] = value
        record["phases"][0]["measurements"]["vcc_3v3"]["outcome"] = "FAIL" if abs(value) > 10 else "PASS"
        line.upload_test_record(record)
    device = tested_device(line, "SN-B3", seed=3)
    line.provision(order, device.serial, device.csr_pem())
    inst = any_world.inst

    shown = stations.distribution(inst, phase="power_rails", name="vcc_3v3")
    page = dashboard_queries.order_stats(inst, order)
    overview = dashboard_queries.overview(inst)

    assert shown["n"] == 4 and shown["records_read"] == 4
    for answer in (shown, page, overview):
        json.dumps(answer, allow_nan=False, default=str)  # no inf or NaN reaches the JSON
