"""Each anomaly detector fires on the line simulator's attacks and stays quiet on a clean line.

The line drives the real server over HTTPS; alerts are read back through ``GET /api/v1/alerts``, as
the dashboard reads them. Settings are written before the line runs (they apply from the next event
on) and name every value a detector is judged by, so no test leans on a default.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fabguard.domain.values import FixtureId
from fabguard.fixture.client import enroll
from fabguard.fixture.simulator import LineConfig, LineReport, ProductionLine
from fabguard.service.catalog import fixtures
from tests.support import World

SUBGROUP, BASELINE = 5, 10  # drift: means of 5 passing units, a chart set by the first 10 of them
GENEROUS_RATE = 1_000_000.0  # units/h: no line in a test comes near it


def _hours(start: timedelta, end: timedelta) -> list[str]:
    now = datetime.now(UTC)
    return [(now + start).strftime("%H:%M"), (now + end).strftime("%H:%M"), "UTC"]


OPEN = (timedelta(hours=-1), timedelta(hours=1))


def _settings(world: World, **overrides: Any) -> None:
    """Working hours that include now at both sites, a generous rated rate and a small drift chart."""
    settings: dict[str, Any] = {
        "working_hours": {"cm-a": _hours(*OPEN), "cm-b": _hours(*OPEN)},
        "rated_units_per_hour": GENEROUS_RATE,
        "drift_subgroup": SUBGROUP,
        "drift_baseline": BASELINE,
    }
    (world.inst.home / "analytics.json").write_text(json.dumps(settings | overrides))


def _alerts(world: World) -> list[dict[str, Any]]:
    with world.admin() as admin:
        response = admin.get("/api/v1/alerts", params={"state": "open"})
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()
    return alerts


def _events(world: World, kind: str) -> list[dict[str, Any]]:
    with world.admin() as admin:
        response = admin.get("/api/v1/events", params={"kind": kind, "limit": 1000})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


def _run(world: World, config: LineConfig, n_fixtures: int = 1, **extra: Any) -> LineReport:
    stations = [world.credentials(f"f{i}") for i in range(1, n_fixtures + 1)]
    with ProductionLine(stations, config, **extra) as line:
        return line.run()


def _only(alerts: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one alert there is, of ``kind``: an attack raises its own detector's alert and nothing else."""
    assert Counter(a["kind"] for a in alerts) == {kind: 1}, alerts
    return alerts[0]


def test_a_clean_line_raises_no_alert(any_world: World) -> None:
    _settings(any_world)
    order = any_world.order(200, order_id="po-clean")
    report = _run(any_world, LineConfig(order, units=90, fail_rate=0.05, seed=7), n_fixtures=2)
    assert report.refused == {} and report.tests_failed > 0 and report.retests > 0  # a line with repairs
    # Every measurement's chart got past its baseline and judged several subgroups.
    passing = report.tests_uploaded - report.tests_failed
    assert passing >= SUBGROUP * (BASELINE + 6)
    assert _alerts(any_world) == []


def test_overproduction_raises_quota_overrun(any_world: World) -> None:
    _settings(any_world)
    order = any_world.order(8, order_id="po-over")
    report = _run(any_world, LineConfig(order, units=12, fail_rate=0.0))
    assert report.provisioned == 8 and report.refused == {"quota_exhausted": 4}
    alert = _only(_alerts(any_world), "quota_overrun")
    assert alert["order_id"] == order and alert["severity"] == "high" and alert["count"] == 4


@pytest.mark.parametrize(
    ("attack", "code", "kind", "severity"),
    [
        ("clones", "key_reused", "key_reused", "critical"),
        ("duplicate_serials", "serial_has_other_key", "duplicate_serial", "critical"),
        ("skip_tests", "test_missing", "untested_unit", "high"),
    ],
)
def test_refused_units_raise_their_detectors_alert(
    any_world: World, attack: str, code: str, kind: str, severity: str
) -> None:
    _settings(any_world)
    order = any_world.order(20, order_id="po-attack")
    config = LineConfig(order, units=6, fail_rate=0.0, seed=3, **{attack: 2})
    report = _run(any_world, config)
    assert report.provisioned == 6 and report.refused == {code: 2}
    alert = _only(_alerts(any_world), kind)
    assert alert["order_id"] == order and alert["severity"] == severity and alert["count"] == 2
    assert alert["site_id"] == "cm-a" and alert["fixture_id"] == "f1"
    refusals = {e["seq"] for e in _events(any_world, "unit.refused") if e["code"] == code}
    assert set(alert["evidence"]) == refusals


@pytest.mark.parametrize("how", ["revoked", "superseded"])
def test_an_untrusted_station_raises_untrusted_fixture(any_world: World, how: str) -> None:
    _settings(any_world)
    order = any_world.order(20, order_id="po-rogue")
    rogue = any_world.credentials("f-rogue")
    if how == "revoked":
        fixtures.revoke_fixture(any_world.inst, FixtureId("f-rogue"), reason="stolen from the line", actor="test")
        code, severity, fixture_id = "fixture_revoked", "critical", "f-rogue"
    else:  # re-enrolled elsewhere: the certificate it still holds is no longer any fixture's
        token = fixtures.new_enrollment_token(any_world.inst, FixtureId("f-rogue"), actor="test")
        enroll(any_world.url, token, any_world.tmp / "f-rogue-new", ca_file=any_world.root_ca)
        code, severity, fixture_id = "unknown_fixture", "high", None
    report = _run(any_world, LineConfig(order, units=4, fail_rate=0.0, untrusted_attempts=3), untrusted=rogue)
    assert report.provisioned == 4 and report.refused == {code: 3}
    alert = _only(_alerts(any_world), "untrusted_fixture")
    assert alert["severity"] == severity and alert["fixture_id"] == fixture_id and alert["count"] == 3
    assert set(alert["evidence"]) == {e["seq"] for e in _events(any_world, "request.refused") if e["code"] == code}


def test_a_fixture_of_another_site_raises_a_wrong_site_alert(any_world: World) -> None:
    _settings(any_world)
    order = any_world.order(20, order_id="po-site")
    stray = any_world.credentials("f-stray", site="cm-b")
    report = _run(any_world, LineConfig(order, units=4, fail_rate=0.0, wrong_site_attempts=2), wrong_site=stray)
    assert report.refused == {"wrong_site": 2}
    (alert,) = _alerts(any_world)
    assert alert["kind"] == "wrong_site" and alert["severity"] == "high"
    assert alert["order_id"] == order and alert["fixture_id"] == "f-stray" and alert["count"] == 2


def test_copied_test_records_raise_copied_test_record(any_world: World) -> None:
    _settings(any_world)
    order = any_world.order(20, order_id="po-copy")
    report = _run(any_world, LineConfig(order, units=8, fail_rate=0.0, copied_records=3, seed=5))
    assert report.provisioned == 11 and report.tests_uploaded == 11  # the copies pass the test gate
    alerts = _alerts(any_world)
    assert {a["kind"] for a in alerts} == {"copied_test_record"}
    copies = {e["seq"]: e["serial"] for e in _events(any_world, "test.recorded") if "R" in e["serial"]}
    assert sorted(s for a in alerts for s in a["evidence"]) == sorted(copies)
    for a in alerts:
        assert a["severity"] == "critical" and a["site_id"] == "cm-a" and a["fixture_id"] == "f1"
        assert any(serial in a["message"] for serial in copies.values())


def test_a_drifting_measurement_raises_measurement_drift(any_world: World) -> None:
    _settings(any_world)
    order = any_world.order(100, order_id="po-drift")
    after = SUBGROUP * BASELINE  # the chart is set by units 1-50; every later unit measures vcc_3v3 4 sigma high
    config = LineConfig(order, units=after + 6 * SUBGROUP, fail_rate=0.0, drift_after=after, drift_sigma=4.0)
    report = _run(any_world, config)
    assert report.provisioned == config.units
    alert = _only(_alerts(any_world), "measurement_drift")
    assert "power_rails/vcc_3v3" in alert["message"] and "rule 1" in alert["message"]
    assert alert["site_id"] == "cm-a" and alert["fixture_id"] == "f1" and alert["severity"] == "warning"
    drifted = {e["seq"] for e in _events(any_world, "test.recorded") if e["serial"] > f"SN{after:07d}"}
    assert len(drifted) == 6 * SUBGROUP and set(alert["evidence"]) == drifted


def test_a_burst_past_the_rated_rate_raises_throughput_spike(any_world: World) -> None:
    rated, per_bucket = 120.0, 10  # the detector's buckets are 5 minutes: 10 units each at 120 units/h
    _settings(any_world, rated_units_per_hour=rated)
    order = any_world.order(100, order_id="po-burst")
    stations = [any_world.credentials("f1"), any_world.credentials("f2")]
    with ProductionLine(stations, LineConfig(order, units=per_bucket, fail_rate=0.0)) as line:
        line.run()
    assert _alerts(any_world) == []  # the rated rate itself is fine
    with ProductionLine(stations, LineConfig(order, units=0, fail_rate=0.0, burst=20)) as line:
        report = line.run()
    assert report.provisioned == 20 and report.refused == {}
    alert = _only(_alerts(any_world), "throughput_spike")
    assert alert["order_id"] == order and alert["site_id"] == "cm-a" and "rated 120 units/h" in alert["message"]
    # Every unit past the tenth in its 5-minute bucket is evidence (the line may straddle two buckets).
    buckets = Counter(
        math.floor(datetime.fromisoformat(e["at"]).timestamp() / 300) for e in _events(any_world, "unit.provisioned")
    )
    assert alert["count"] == sum(max(n - per_bucket, 0) for n in buckets.values()) >= 10


def test_activity_outside_working_hours_raises_off_hours_activity(any_world: World) -> None:
    _settings(any_world, working_hours={"cm-a": _hours(timedelta(hours=2), timedelta(hours=3))})
    order = any_world.order(20, order_id="po-night")
    report = _run(any_world, LineConfig(order, units=5, fail_rate=0.0))
    alert = _only(_alerts(any_world), "off_hours_activity")
    assert alert["site_id"] == "cm-a" and alert["severity"] == "high"
    assert alert["count"] == report.tests_uploaded + report.provisioned == 10
