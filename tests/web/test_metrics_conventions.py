"""``/metrics`` by Prometheus's conventions (issue 26, item 6): a real scrape after some provisioning is
clean for ``promtool check metrics``, has the server's own figures (requests by route template and
status, build and process, units by order and code, writer groups and queue, database pool), is read
with a ``metrics`` token that may outlive a year, and has every metric the Grafana dashboard uses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabguard import __version__
from fabguard.domain.errors import InvalidRequest
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.service.access import tokens
from tests.support import World

DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "fabguard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(world: World, token: str) -> httpx.Response:
    with world.admin() as client:
        client.get("/no/such/path/1234")  # an unmatched path: counted under "unmatched", never its own
        return client.get("/metrics", headers={"Authorization": f"Bearer {token}"})


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def scraped(world: World) -> str:
    order = world.order(3, order_id="po-scrape")
    with ProductionLine([world.credentials("f1")], LineConfig(order, units=5, fail_rate=0.0)) as line:
        line.run()
    _, secret = tokens.create_token(
        world.inst, name="prometheus", role="metrics", actor="test", expires_in=timedelta(days=3 * 365)
    )
    response = _scrape(world, secret)
    assert response.status_code == 200, response.text
    return response.text


def test_a_scrape_has_the_servers_own_figures(scraped: str) -> None:
    samples = _samples(scraped)
    provisioned = ("fabguard_units_provisioned_total", (("order_id", "po-scrape"),))
    refused = ("fabguard_units_refused_total", (("code", "quota_exhausted"), ("order_id", "po-scrape")))
    assert samples[provisioned] == 3 and samples[refused] == 2
    assert samples[("fabguard_build_info", (("version", __version__),))] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("fabguard_provisioning_group_units_sum", ())] == 5
    assert ("fabguard_provisioning_queue_requests", ()) in samples
    assert samples[("fabguard_db_pool_connections", (("state", "in_use"),))] >= 0
    assert samples[("fabguard_db_pool_connections", (("state", "idle"),))] >= 1  # the scrape's own read, back
    assert samples[("fabguard_db_pool_size_connections", ())] > 0
    routes = {dict(labels)["route"] for name, labels in samples if name == "fabguard_http_requests_total"}
    assert "/api/v1/units/provision" in routes
    assert "unmatched" in routes and not any("1234" in r for r in routes)
    unmatched = ("fabguard_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    assert samples[unmatched] == 1
    latency = [
        labels
        for name, labels in samples
        if name == "fabguard_http_request_duration_seconds_count" and dict(labels)["route"] == "unmatched"
    ]
    assert latency == [(("method", "GET"), ("route", "unmatched"), ("status", "404"))]


def test_promtool_finds_nothing_to_say(scraped: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (Debian's prometheus package; scripts/test installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run([promtool, "check", "metrics"], input=scraped, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_every_metric_of_the_grafana_dashboard_is_in_a_scrape(scraped: str) -> None:
    names = {s.name for family in text_string_to_metric_families(scraped) for s in family.samples}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []) if "expr" in target]
    assert exprs
    used = {name for expr in exprs for name in re.findall(r"\b(fabguard_[a-z_]+|process_[a-z_]+)\b", expr)}
    assert used and used - names == set()


def test_a_metrics_token_reads_only_metrics_and_may_live_for_years(world: World) -> None:
    p, secret = tokens.create_token(
        world.inst, name="prometheus", role="metrics", actor="test", expires_in=timedelta(days=5 * 365)
    )
    assert p.expires_at is not None and p.expires_at - world.inst.clock() > timedelta(days=4 * 365)
    with world.admin() as client:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert client.get("/metrics", headers=bearer).status_code == 200
        refused = client.get("/api/v1/orders", headers=bearer)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    with pytest.raises(InvalidRequest) as too_long:
        tokens.create_token(world.inst, name="eng", role="engineer", actor="test", expires_in=timedelta(days=400))
    assert too_long.value.code == "token_expiry_invalid"
    with pytest.raises(InvalidRequest):
        tokens.create_token(world.inst, name="p2", role="metrics", actor="test", expires_in=timedelta(days=1831))
