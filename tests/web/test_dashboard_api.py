"""Analytics read from a real database, behind the real HTTPS API, fed by the production-line simulator."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabguard.domain.values import FixtureId
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.service.access import tokens
from fabguard.service.catalog import fixtures
from tests.support import World


def _alerts(world: World, state: str = "open") -> list[dict[str, object]]:
    with world.admin() as admin:
        response = admin.get("/api/v1/alerts", params={"state": state})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_clean_line_has_metrics_and_no_alerts(any_world: World) -> None:
    order = any_world.order(40, order_id="po-clean")
    line = ProductionLine(
        [any_world.credentials("f1"), any_world.credentials("f2")], LineConfig(order, units=30, seed=4)
    )
    with line:
        report = line.run()
    assert _alerts(any_world) == []
    with any_world.admin() as admin:
        stats = admin.get(f"/api/v1/stats/orders/{order}").json()
        overview = admin.get("/api/v1/stats/overview").json()
    assert stats["order"]["used"] == report.provisioned
    assert stats["burn_down"]["remaining"] == 40 - report.provisioned
    assert stats["burn_down"]["projected_exhaustion"] is not None
    assert stats["yield"]["units_tested"] == 30
    assert stats["yield"]["retested"] == report.retests and stats["yield"]["final_pass"] == report.provisioned
    assert sum(b["provisioned"] for b in stats["series"]) == report.provisioned
    names = {c["name"]: c for c in stats["capability"]}
    # Capability is over the order's own units: each provisioned unit's latest test, once.
    assert names["vcc_3v3"]["n"] == report.provisioned and names["vcc_3v3"]["ppk"] > 0
    assert overview["totals"]["provisioned"] == report.provisioned and overview["totals"]["open_alerts"] == 0
    assert {f["id"] for f in overview["fixtures"]} == {"f1", "f2"}
    assert all(f["last_activity"] for f in overview["fixtures"])


def test_an_attacked_line_raises_alerts_that_can_be_acknowledged(any_world: World) -> None:
    order = any_world.order(10, order_id="po-attacked")
    config = LineConfig(order, units=14, fail_rate=0.0, clones=2, skip_tests=2, seed=5)
    with ProductionLine([any_world.credentials("f1")], config) as line:
        report = line.run()
    assert report.refused["quota_exhausted"] == 4
    kinds = {a["kind"]: a for a in _alerts(any_world)}
    assert {"quota_overrun", "untested_unit"} <= set(kinds)
    assert kinds["quota_overrun"]["order_id"] == order and kinds["quota_overrun"]["count"] >= 4
    if report.refused["key_reused"]:
        assert kinds["key_reused"]["severity"] == "critical"

    target = kinds["quota_overrun"]
    with any_world.admin() as admin:
        done = admin.post(f"/api/v1/alerts/{target['id']}/ack", json={"note": "PO amendment on its way"})
        assert done.status_code == 200, done.text
        assert done.json()["acknowledged"] is True
        missing = admin.post("/api/v1/alerts/quota_overrun.0000000000000000/ack", json={})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "alert_not_found"
        assert admin.post("/api/v1/alerts/bad id/ack", json={}).status_code == 422
        ack_events = admin.get("/api/v1/events", params={"kind": "alert.acknowledged"}).json()
    assert ack_events[0]["detail"]["alert_id"] == target["id"]
    assert ack_events[0]["detail"]["note"] == "PO amendment on its way"
    assert target["id"] not in {a["id"] for a in _alerts(any_world)}
    assert target["id"] in {a["id"] for a in _alerts(any_world, "all") if a["acknowledged"]}


def test_an_auditor_reads_alerts_but_cannot_acknowledge(world: World) -> None:
    order = world.order(1)
    client = world.fixture("f1")
    with pytest.raises(FabGuardClientError):
        from fabguard.fixture.device import SimulatedDevice

        device = SimulatedDevice("SN1")
        client.provision(order, device.serial, device.csr_pem())
    _, secret = tokens.create_token(world.inst, name="auditor", role="auditor", actor="test")
    (alert,) = _alerts(world)
    with world.admin() as admin:
        admin.headers["Authorization"] = f"Bearer {secret}"
        assert admin.get("/api/v1/alerts").status_code == 200
        refused = admin.post(f"/api/v1/alerts/{alert['id']}/ack", json={})
    assert refused.status_code == 403


def test_copied_test_records_and_a_revoked_fixture_raise_alerts(any_world: World) -> None:
    client = any_world.fixture("f1")
    client.upload_test_record(openhtf_record("SN0000001", "f1", fail=False, rng=random.Random(9)))
    copied = openhtf_record("SN0000002", "f1", fail=False, rng=random.Random(9))
    client.upload_test_record(copied)
    fixtures.revoke_fixture(any_world.inst, FixtureId("f1"), reason="stolen", actor="test")
    with pytest.raises(FabGuardClientError, match="fixture_revoked"):
        client.upload_test_record(openhtf_record("SN0000003", "f1", fail=False, rng=random.Random(1)))
    kinds = {a["kind"]: a for a in _alerts(any_world)}
    assert "SN0000002" in kinds["copied_test_record"]["message"]
    assert len(kinds["copied_test_record"]["evidence"]) == 1  # the copy; its message names the original
    assert kinds["untrusted_fixture"]["fixture_id"] == "f1" and kinds["untrusted_fixture"]["severity"] == "critical"


def test_metrics_are_prometheus_text_and_need_a_token(any_world: World) -> None:
    order = any_world.order(3, order_id="po-metrics")
    with ProductionLine([any_world.credentials("f1")], LineConfig(order, units=5, fail_rate=0.0)) as line:
        line.run()
    with any_world.admin() as admin:
        response = admin.get("/metrics")
        anonymous = admin.get("/metrics", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    labels = (("order_id", "po-metrics"), ("product_id", "sensor"), ("site_id", "cm-a"), ("state", "active"))
    assert samples[("fabguard_order_used_units", labels)] == 3
    assert samples[("fabguard_refusals_total", (("code", "quota_exhausted"), ("kind", "unit.refused")))] == 2
    assert samples[("fabguard_alerts_open", (("kind", "quota_overrun"), ("severity", "high")))] == 1
    assert samples[("fabguard_events_total", ())] > 0


def test_the_stream_needs_a_token_and_sends_an_overview(world: World) -> None:
    world.order(3, order_id="po-stream")
    with world.admin() as admin:
        assert admin.get("/api/v1/stream").status_code == 401
        assert admin.get("/api/v1/stream", params={"token": "fgt_wrong"}).status_code == 401
        with admin.stream("GET", "/api/v1/stream", params={"token": world.admin_token}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            data = None
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                    break
    assert data is not None and [o["id"] for o in data["orders"]] == ["po-stream"]


def test_the_page_is_served_with_a_strict_content_security_policy(world: World) -> None:
    with httpx.Client(base_url=world.url, verify=False) as client:
        page = client.get("/")
        script = client.get("/static/app.js")
        chart = client.get("/static/vendor/chart.umd.min.js")
    assert page.status_code == 200 and "FabGuard" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and chart.status_code == 200


def _settings(world: World, **settings: object) -> None:
    (world.inst.home / "analytics.json").write_text(json.dumps(settings))


def test_a_drifting_measurement_raises_a_drift_alert(any_world: World) -> None:
    from fabguard.fixture.openhtf_records import DEFAULT_PROCEDURE, MeasurementSpec

    _settings(any_world, drift_subgroup=1, drift_baseline=20)
    client = any_world.fixture("f1")
    rng = random.Random(3)
    steady = [openhtf_record(f"SN{i:07d}", "f1", fail=False, rng=rng) for i in range(20)]
    client.upload_test_records(steady)
    assert _alerts(any_world) == []
    vcc = DEFAULT_PROCEDURE[0]
    # 8 sigma high, with the spec widened so the values are not clamped to it: past rule 1's 5 sigma.
    drifted = (
        MeasurementSpec(
            vcc.phase,
            vcc.name,
            vcc.nominal + 8 * vcc.sigma,
            vcc.sigma / 4,
            vcc.lower,
            vcc.nominal + 10 * vcc.sigma,
            "V",
        ),
    )
    shifted = [
        openhtf_record(f"SN{i:07d}", "f1", fail=False, rng=rng, procedure=drifted + DEFAULT_PROCEDURE[1:])
        for i in range(20, 30)
    ]
    client.upload_test_records(shifted)
    (alert,) = _alerts(any_world)  # the steady measurements stay quiet
    assert alert["kind"] == "measurement_drift" and alert["site_id"] == "cm-a" and alert["severity"] == "warning"
    assert "power_rails/vcc_3v3" in str(alert["message"]) and "rule 1" in str(alert["message"])
    with any_world.admin() as admin:
        events = admin.get("/api/v1/events", params={"kind": "test.recorded", "limit": 100}).json()
    recorded = {e["seq"] for e in events if e["serial"] >= "SN0000020"}
    assert set(alert["evidence"]) == recorded


def test_provisioning_outside_the_sites_working_hours_raises_an_alert(any_world: World) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    open_hours = [(now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1)).strftime("%H:%M"), "UTC"]
    _settings(any_world, working_hours={"cm-a": open_hours})
    order = any_world.order(5, order_id="po-hours")
    station = any_world.credentials("f1")
    with ProductionLine([station], LineConfig(order, units=2, fail_rate=0.0)) as line:
        line.run()
    assert _alerts(any_world) == []

    # A settings change applies from the next event on: what was done in open hours stays quiet.
    closed = [(now + timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=3)).strftime("%H:%M"), "UTC"]
    _settings(any_world, working_hours={"cm-a": closed, "cm-b": open_hours})
    assert _alerts(any_world) == []
    with ProductionLine([station], LineConfig(order, units=2, fail_rate=0.0, seed=2, serial_prefix="SNB")) as line:
        line.run()
    (alert,) = _alerts(any_world)
    assert alert["kind"] == "off_hours_activity" and alert["site_id"] == "cm-a" and alert["severity"] == "high"
    assert "outside working hours" in str(alert["message"]) and alert["count"] >= 4  # 2 tests, 2 units


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"working_hours": {"cm-a": ["06:00", "22:00", "Mars/Olympus"]}}, "Mars/Olympus"),
        ({"drift_limit": 0}, "drift_limit"),
        ({"drift_limit": "nan"}, "drift_limit"),
        ({"drift_run": 1}, "drift_run"),
        ({"drift_trend": 2}, "drift_trend"),
        ({"drift_runs": 9}, "unknown settings"),
    ],
)
def test_a_broken_settings_file_is_a_configuration_error_not_silence(
    world: World, settings: dict[str, object], says: str
) -> None:
    world.order(3, order_id="po-settings")
    with world.admin() as admin:
        before = admin.get("/api/v1/stats/overview").json()["sequence"]
        _settings(world, **settings)
        response = admin.get("/api/v1/alerts")
        assert response.status_code == 500 and response.json()["error"]["code"] == "configuration_error"
        assert says in response.json()["error"]["message"]
        (world.inst.home / "analytics.json").unlink()
        assert admin.get("/api/v1/stats/overview").json()["sequence"] == before  # nothing was recorded
