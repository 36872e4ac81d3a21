"""``fabguard stats``: production tables, order burn-down, alerts and acknowledgements, catching the projection up."""

from __future__ import annotations

import json
import random
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fabguard.cli.main import app
from fabguard.fixture.client import FabGuardClientError
from fabguard.fixture.openhtf_records import DEFAULT_PROCEDURE, openhtf_record
from fabguard.service.analytics import dashboard_queries
from tests.support import World, tested_device

runner = CliRunner()


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, ["--home", str(home), *args], input=input, env={"COLUMNS": "200"}, catch_exceptions=False)


def fg(home: Path, *args: str) -> tuple[int, str]:
    """Exit code and output, with table borders dropped and whitespace collapsed."""
    result = run(home, *args)
    return result.exit_code, " ".join(re.sub(r"[\u2500-\u257f]", " ", result.output).split())


def fg_json(home: Path, *args: str) -> Any:
    result = run(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _line(world: World) -> str:
    """Order po-cli (quota 2): three units tested, one failing first and passing on retest, a third refused."""
    order = world.order(2, order_id="po-cli")
    client = world.fixture("f1")
    first = tested_device(client, "SN0000001", seed=1)
    second = tested_device(client, "SN0000002", passed=False, seed=2)
    client.upload_test_record(openhtf_record("SN0000002", "f1", fail=False, rng=random.Random(20)))
    third = tested_device(client, "SN0000003", seed=3)
    for d in (first, second):
        client.provision(order, d.serial, d.csr_pem())
    with pytest.raises(FabGuardClientError, match="quota_exhausted"):
        client.provision(order, third.serial, third.csr_pem())
    return order


def test_production_prints_its_tables_and_json(any_world: World) -> None:
    home = any_world.inst.home
    _line(any_world)
    failed = DEFAULT_PROCEDURE[random.Random(2).randrange(len(DEFAULT_PROCEDURE))].name

    code, out = fg(home, "stats", "production")
    assert code == 0, out
    assert "units provisioned 2" in out and "tests 4 (FAIL 1, PASS 3)" in out
    assert "first-pass yield 66.7% (2 units)" in out and "final yield 100.0% (3 units)" in out
    assert "retest rate 33.3% (1 units)" in out and "scrap 0.0% (0 units)" in out
    assert "unit.refused quota_exhausted 1" in out
    assert f"{failed} 1 100.0% 100.0%" in out
    assert "vcc_3v3 4" in out and "Cpk" in out and "Traceback" not in out

    figures = fg_json(home, "stats", "production", "--order", "po-cli")
    assert figures["provisioned"] == 2 and figures["scope"]["order_id"] == "po-cli"
    # po-cli is the only order at cm-a: its units are the site's (docs/figures.md), the refused third included.
    assert figures["yield"]["units_tested"] == 3 and figures["yield"]["retest_rate"] == pytest.approx(1 / 3)
    assert figures["yield"] == fg_json(home, "stats", "production")["yield"]
    assert figures["refusals"] == {"unit.refused": {"quota_exhausted": 1}}
    assert fg_json(home, "stats", "production", "--site", "cm-b")["tests"]["total"] == 0
    assert fg_json(home, "stats", "production", "--fixture", "f1", "--hours", "1")["tests"]["total"] == 4
    assert fg_json(home, "stats", "production", "--product", "sensor")["provisioned"] == 2
    old = fg_json(home, "stats", "production", "--until", "2020-01-02T00:00:00+00:00", "--hours", "24")
    assert old["window"] == {"since": "2020-01-01T00:00:00+00:00", "until": "2020-01-02T00:00:00+00:00", "hours": 24.0}
    assert old["provisioned"] == 0 and old["tests"]["total"] == 0


def test_order_shows_its_burn_down(world: World) -> None:
    _line(world)
    code, out = fg(world.inst.home, "stats", "order", "po-cli")
    assert code == 0, out
    assert "Order po-cli: sensor at cm-a" in out
    assert "quota 2" in out and "used 2" in out and "remaining 0" in out and "rate 2 units/h" in out
    assert "projected exhaustion 20" in out  # exhausted: when the last unit was provisioned
    assert "first-pass yield 66.7% (2 units)" in out and "quota_exhausted 1" in out and "Capability" in out
    figures = fg_json(world.inst.home, "stats", "order", "po-cli")
    assert figures["burn_down"]["remaining"] == 0 and figures["refused"] == {"quota_exhausted": 1}


def test_an_acknowledged_alert_is_no_longer_listed_as_open(world: World) -> None:
    home = world.inst.home
    _line(world)
    code, out = fg(home, "stats", "alerts")
    assert code == 0 and "Open alerts" in out and "quota_overrun" in out and "high" in out, out
    (alert,) = [a for a in fg_json(home, "stats", "alerts") if a["kind"] == "quota_overrun"]
    assert alert["order_id"] == "po-cli" and not alert["acknowledged"]

    code, out = fg(home, "stats", "ack", alert["id"], "--note", "PO amendment on its way")
    assert code == 0 and f"Alert {alert['id']} (quota_overrun) acknowledged by local:" in out, out
    code, out = fg(home, "stats", "alerts")
    assert code == 0 and alert["id"] not in out
    (acked,) = [a for a in fg_json(home, "stats", "alerts", "--all") if a["id"] == alert["id"]]
    assert acked["acknowledged"] and acked["acknowledged_by"].startswith("local:")
    code, out = fg(home, "stats", "alerts", "--all")
    assert alert["id"] in out and "local:" in out


def test_catch_up_folds_every_event_then_has_nothing_left(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fg(home, "init", "--org", "Acme Devices")[0] == 0
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    assert fg(home, "site", "add", "cm-a", "--name", "CM A")[0] == 0
    assert fg(home, "order", "create", "--id", "po-1", "--product", "sensor", "--site", "cm-a", "--quota", "5")[0] == 0
    from fabguard.service.core.instance import Instance

    inst = Instance.open(home)
    try:
        events = dashboard_queries.current_sequence(inst)
    finally:
        inst.close()
    assert events > 0
    code, out = fg(home, "stats", "catch-up")
    assert code == 0, out
    assert f"Projection up to date at event {events}: folded {events} events in" in out
    code, out = fg(home, "stats", "catch-up")
    assert code == 0 and f"up to date at event {events}: folded 0 events" in out


def test_rebuild_judges_history_under_new_settings_and_keeps_acknowledgements(world: World) -> None:
    home = world.inst.home
    _line(world)
    (overrun,) = [a for a in fg_json(home, "stats", "alerts") if a["kind"] == "quota_overrun"]
    assert fg(home, "stats", "ack", overrun["id"])[0] == 0
    before = {a["id"]: a for a in fg_json(home, "stats", "alerts", "--all")}
    figures = fg_json(home, "stats", "order", "po-cli")
    assert "off_hours_activity" not in {a["kind"] for a in before.values()}
    # Working hours that exclude now apply from the next event on; a rebuild judges the past by them too.
    now = world.inst.clock()
    closed = [(now + timedelta(hours=2)).strftime("%H:%M"), (now + timedelta(hours=3)).strftime("%H:%M"), "UTC"]
    (home / "analytics.json").write_text(json.dumps({"working_hours": {"cm-a": closed}}))
    assert "off_hours_activity" not in {a["kind"] for a in fg_json(home, "stats", "alerts", "--all")}

    assert run(home, "stats", "rebuild", input="n\n").exit_code == 1  # asks first; no changes the answer
    code, out = fg(home, "stats", "rebuild", "--yes")
    assert code == 0 and "Projection up to date at event" in out, out
    after = {a["id"]: a for a in fg_json(home, "stats", "alerts", "--all")}
    assert "off_hours_activity" in {a["kind"] for a in after.values()}
    assert after[overrun["id"]]["acknowledged"]  # the acknowledgement is an event: folded again
    for alert_id, alert in before.items():
        assert {k: after[alert_id][k] for k in ("count", "evidence", "message")} == {
            k: alert[k] for k in ("count", "evidence", "message")
        }
    assert fg_json(home, "stats", "order", "po-cli")["yield"] == figures["yield"]


def test_bad_input_is_one_line_with_exit_code_2(world: World) -> None:
    home = world.inst.home
    world.order(1, order_id="po-1")
    for args, expected in [
        (("production", "--since", "yesterday"), "ISO 8601"),
        (("production", "--until", "2027-01-01T00:00:00"), "time zone"),
        (("production", "--since", "2027-01-01T00:00:00+00:00", "--hours", "2"), "not both"),
        (("production", "--hours", "0"), "--hours must be"),
        (("production", "--hours", "nan"), "--hours must be"),
        (("production", "--hours", "1e300"), "--hours must be"),
        (("production", "--since", "2030-01-01T00:00:00+00:00", "--until", "2029-01-01T00:00:00+00:00"), "start"),
        (("production", "--until", "0001-01-01T00:00:00+00:00"), "outside the dates"),
        (("production", "--order", "po-missing"), "no order"),
        (("order", "po-missing"), "no order"),
        (("ack", "quota_overrun.0000000000000000"), "no alert"),
        (("ack", "x", "--note", "bad\nnote"), "note"),
    ]:
        result = run(home, "stats", *args)
        assert result.exit_code == 3, (args, result.output)  # refused, its code on the line
        assert expected in result.output and "Traceback" not in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, (args, result.output)


def test_help_says_what_each_command_and_option_does(world: World) -> None:
    home = world.inst.home
    code, out = fg(home, "--help")
    assert code == 0 and "stats" in out
    code, out = fg(home, "stats", "--help")
    for command in ("production", "order", "alerts", "ack", "catch-up", "rebuild"):
        assert command in out
    for command, phrases in [
        ("production", ("Start of the window", "End of the window", "Window length", "this product", "this order")),
        ("production", ("Only this site", "Only this fixture", "Print JSON")),
        ("order", ("quota burn-down", "The order", "Print JSON")),
        ("alerts", ("open ones", "Include acknowledged", "Print JSON")),
        ("ack", ("Acknowledge an alert", "The alert's id", "Why, in words")),
        ("catch-up", ("Fold every event",)),
        ("rebuild", ("Empty the analytics projection", "Do not ask")),
    ]:
        code, out = fg(home, "stats", command, "--help")
        assert code == 0, out
        for phrase in phrases:
            assert phrase in out, (command, phrase)
