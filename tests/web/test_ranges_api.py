"""The overview over any range: buckets that fit the span (read from the hour rollups when they are
hours wide), the same units counted whatever the range, a bad range refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support import World, tested_device


def _overview(world: World, **params: str) -> tuple[int, Any]:
    with world.admin() as admin:
        answer = admin.get("/api/v1/stats/overview", params=params)
    return answer.status_code, answer.json()


def test_each_range_has_buckets_that_fit_it_and_counts_the_same_units(any_world: World) -> None:
    order = any_world.order(10, order_id="po-range")
    line = any_world.fixture("f1")
    for n in range(3):
        unit = tested_device(line, f"SNR{n}", seed=n)
        line.provision(order, unit.serial, unit.csr_pem())
    tested_device(line, "SNR9", passed=False, seed=9)
    now = any_world.inst.clock()
    expected = {"hour": 60, "day": 1800, "week": 10800, "month": 43200}
    spans = {
        "hour": timedelta(hours=1),
        "day": timedelta(days=1),
        "week": timedelta(days=7),
        "month": timedelta(days=30),
    }
    status, default = _overview(any_world)
    assert status == 200 and default["bucket_seconds"] == 600 and len(default["series"]) in (48, 49)
    for name, span in spans.items():
        now = any_world.inst.clock()
        since, until = (now - span).isoformat(), now.isoformat()
        status, view = _overview(any_world, since=since, until=until)
        assert status == 200, view
        assert view["bucket_seconds"] == expected[name], name
        assert 1 <= len(view["series"]) <= 61, (name, len(view["series"]))
        assert sum(b["provisioned"] for b in view["series"]) == 3, name
        assert sum(b["tests_passed"] + b["tests_failed"] for b in view["series"]) == 4, name
        assert view["yield"]["units_tested"] == 4 and view["window"]["since"] == since
        if view["bucket_seconds"] >= 3600:  # hour-wide buckets start on the hour
            assert all(b["start"].endswith(":00:00+00:00") for b in view["series"])
    # A range before anything happened counts nothing; an inverted one is refused.
    status, empty = _overview(
        any_world, since=(now - timedelta(days=9)).isoformat(), until=(now - timedelta(days=8)).isoformat()
    )
    assert status == 200 and sum(b["provisioned"] for b in empty["series"]) == 0
    status, bad = _overview(any_world, since=now.isoformat(), until=(now - timedelta(hours=1)).isoformat())
    assert (status, bad["error"]["code"]) == (422, "invalid_window")
