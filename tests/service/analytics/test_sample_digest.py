"""The dashboard's bounded samples read the digest each test record keeps (``record_digests``: its
measured values and failed steps, ``analytics.record_digest``, session 11) and answer exactly what they
answered when they parsed every record's JSON.

Records of every format (OpenHTF uploads, ATML and TestStand XML reports, JUnit XML, CSV) with failed
phases, failed measurements, measurements given as an object in unsorted order and as a list, repeated
phase names, skipped phases, and values that are no number (strings, booleans, null, NaN, an integer of
hundreds of digits) are stored through the service; each view (distribution, failing units, an order's
capability), with each filter (all, a site as an operator sees it, a station) and each step, is asked
twice: as stored, and with the digests deleted, which makes the readers parse each record's JSON as the
code before this change did. The answers must be equal, on both engines; the migration's backfill must
write what the write path wrote.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, insert, inspect, select

from fabguard.analytics import record_digest, samples
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.testrecord import stored_rows, stored_text
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.service.analytics import dashboard_queries, record_samples, stations
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.store.migrate import alembic_config
from fabguard.store.models import RecordDigest, TestRecordRow, Unit

DATA = Path(__file__).resolve().parents[2] / "data" / "testformats"
MIGRATION = Path(__file__).resolve().parents[3] / "src/fabguard/store/migrations/versions/0031_test_record_digest.py"
FIXTURES = (("fx-a1", "cm-a"), ("fx-a2", "cm-a"), ("fx-b1", "cm-b"))
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="station" errors="0" failures="{failures}" skipped="0" tests="2"
 timestamp="2026-12-07T09:40:00.000000+00:00" time="0.5" hostname="line-pc">
<properties><property name="serial" value="{serial}"/><property name="station" value="pytest-station-1"/></properties>
<testcase classname="station_suite" name="test_supply_voltage" time="0.2"><properties>
<property name="vcc" value="{vcc}"/><property name="vcc.lower" value="3.2"/><property name="vcc.upper" value="3.4"/>
<property name="vcc.units" value="V"/></properties>{failure}</testcase>
<testcase classname="station_suite" name="test_idle_current" time="0.3"><properties>
<property name="idle_current" value="11.5"/></properties></testcase>
</testsuite></testsuites>
"""
ODD_VALUES: tuple[Any, ...] = ("n/a", True, None, float("nan"), float("inf"), 10**400, 10**30, 7, -0.0)


def _measurement(name: str, value: Any, outcome: str, **limits: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "outcome": outcome, "measured_value": value, "units": {"name": "V"}}
    return m | (limits or {"validators": ["0.5 <= Marginal:0.6 <= x <= Marginal:1.4 <= 1.5"]})


def _openhtf(serial: str, station: str, i: int, rng: random.Random) -> dict[str, Any]:
    """A record of five phases; every third fails a measurement, every fifth fails a phase alone."""
    fail_m, fail_p = i % 3 == 0, i % 5 == 0
    power = {  # an object whose keys are not in sorted order: stored sorted
        "z_rail": _measurement("z_rail", rng.gauss(1.0, 0.1), "PASS"),
        "vcc": _measurement("vcc", 3.3 + rng.gauss(0, 0.05), "FAIL" if fail_m else "PASS", lower=3.2, upper=3.4),
        "odd": _measurement("odd", ODD_VALUES[i % len(ODD_VALUES)], "PASS", lower=0, upper=10),
        "a_first": _measurement("a_first", rng.uniform(0, 2), "PASS", validators=["x <= 7"]),
    }
    radio = [  # a list: stored in its order
        _measurement("tx_dbm", rng.gauss(8, 1), "FAIL" if fail_m and i % 2 else "PASS", validators=["6 <= x"]),
        _measurement("rx_dbm", int(rng.uniform(-90, -40)), "PASS", validators=["x == -60"]),
    ]
    phases = [
        {"name": "power", "outcome": "FAIL" if fail_m else "PASS", "measurements": power},
        {"name": "radio", "outcome": "FAIL" if fail_m and i % 2 else "PASS", "measurements": radio},
        {"name": "flash", "outcome": "ERROR" if fail_p else "PASS", "measurements": {}},
        {"name": "skipped", "outcome": "SKIP", "measurements": {"v": _measurement("v", 1.0, "UNSET")}},
        {  # a phase name again, its measurement failing in some records
            "name": "power",
            "outcome": "FAIL" if i % 4 == 1 else "PASS",
            "measurements": {"vcc": _measurement("vcc", 3.1 + rng.random() / 2, "FAIL" if i % 4 == 1 else "PASS")},
        },
    ]
    failed = fail_m or fail_p or i % 4 == 1
    outcome = ("FAIL", "ERROR", "TIMEOUT")[i % 3] if failed else "PASS"
    return {
        "dut_id": serial,
        "station_id": station,
        "outcome": outcome,
        "start_time_millis": 1_765_000_000_000 + i,
        "end_time_millis": 1_765_000_000_500 + i,
        "phases": phases,
    }


def _files() -> list[tuple[bytes, str]]:
    found = [(p.read_bytes(), "atml") for p in sorted((DATA / "atml").glob("*.xml"))]
    found += [(p.read_bytes(), "teststand-xml") for p in sorted((DATA / "teststand_xml").glob("*.xml"))]
    found.append(((DATA / "csv" / "station_run.csv").read_bytes(), "csv"))
    for k, vcc in enumerate(("3.31", "3.55", "3.25")):
        failure = '<failure message="vcc out of range"/>' if vcc == "3.55" else ""
        body = JUNIT.format(serial=f"SN-JUNIT-{k}", vcc=vcc, failure=failure, failures=int(bool(failure)))
        found.append((body.encode(), "junit"))
    return found


def _store(inst: Instance) -> None:
    for site in ("cm-a", "cm-b"):  # a product per site: the files' serials are tested at both
        product_catalog.create_product(inst, product_id=ProductId(f"sensor-{site}"), name=site, actor="test")
        product_catalog.create_site(inst, site_id=SiteId(site), name=site, actor="test")
    for fixture_id, site in FIXTURES:
        fixtures.create_fixture(inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(site), actor="test")
    rng = random.Random(11)
    for k, (fixture_id, site) in enumerate(FIXTURES):
        facts = FixtureFacts(fixture_id, site, False)
        batch = [_openhtf(f"SN{k}-{i:03d}", fixture_id, i, rng) for i in range(40)]
        assert all(r["status"] == "stored" for r in testrecords.record_tests(inst, facts, batch))
        testrecords.record_test(inst, facts, _openhtf(f"SN{k}-000", fixture_id, 3, rng))  # a retest
        for body, fmt in _files():
            testrecords.record_test_file(inst, facts, body, fmt, UTC)


def _units(inst: Instance) -> list[str]:
    """An order per site holding every serial tested there (rows as provisioning writes them)."""
    made = []
    with inst.db.read() as s:
        tested = sorted(set(s.execute(select(TestRecordRow.site_id, TestRecordRow.serial)).all()))
    for site in ("cm-a", "cm-b"):
        made.append(
            orders.create_order(
                inst, product_id=ProductId(f"sensor-{site}"), site_id=SiteId(site), quota=500, actor="test",
                order_id=OrderId(f"po-{site}"),
            ).id
        )  # fmt: skip
    with inst.db.transaction() as s:
        rows = [
            {
                "product_id": f"sensor-{site}", "serial": serial, "order_id": f"po-{site}", "fixture_id": FIXTURES[0][0],
                "key_fingerprint": f"k{i}", "cert_serial": f"c{i}", "cert_sha256": f"h{i}", "certificate_pem": "",
                "issued_at": datetime.now(UTC),
            }
            for i, (site, serial) in enumerate(tested)
        ]  # fmt: skip
        s.execute(insert(Unit), rows)
    return made


def _steps(inst: Instance) -> tuple[set[tuple[str, str]], set[tuple[str, str | None]]]:
    """Every (phase, measurement) with a value, and every step that failed, read from the stored JSON."""
    measured: set[tuple[str, str]] = set()
    failed: set[tuple[str, str | None]] = set()
    with inst.db.read() as s:
        for (body,) in s.execute(select(TestRecordRow.record_json)):
            phases, measurements = stored_rows(json.loads(body))
            measured |= {(p, n) for p, n, _, v, *_ in measurements if v is not None}
            failed |= set(record_digest.failed_steps(phases, measurements))
            failed |= {(p, None) for p, _ in phases}
    return measured, failed


def _answers(inst: Instance, made: list[str]) -> dict[str, Any]:
    measured, failed = _steps(inst)
    assert len(measured) > 15 and len([s for s in failed if s[1]]) > 3  # the data is as rich as meant
    scopes: list[dict[str, str]] = [{}, {"site_id": "cm-a"}, {"site_id": "cm-b"}, {"fixture_id": "fx-a2"}]
    found: dict[str, Any] = {}
    for scope in scopes:
        for phase, name in [*sorted(measured), ("power", "nothing")]:
            found[f"distribution {phase} {name} {scope}"] = stations.distribution(inst, phase=phase, name=name, **scope)
        for phase, m in sorted(failed, key=str):
            found[f"failing {phase} {m} {scope}"] = stations.failing_units(inst, phase=phase, measurement=m, **scope)
        for phase in sorted({p for p, _ in failed}):  # "" is asked as None is: the phase itself
            found[f"failing {phase} '' {scope}"] = stations.failing_units(inst, phase=phase, measurement="", **scope)
    for order in made:
        page = dashboard_queries.order_stats(inst, order)
        found[f"order {order}"] = (page["capability"], page["capability_sample"])
    return found


def _delete_digests(inst: Instance) -> None:
    with inst.db.transaction() as s:
        s.execute(delete(RecordDigest))


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0031", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (a capability of one value has no sigma)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("limits", ["default", "small"])
def test_the_digests_answer_what_parsing_the_records_answered(
    any_instance: Instance, limits: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = any_instance
    _store(inst)
    made = _units(inst)
    if limits == "small":  # samples smaller than the scope: which records were read must not change either
        monkeypatch.setattr(stations, "SAMPLE", 7)
        monkeypatch.setattr(stations, "FAILING_SCAN", 9)
        monkeypatch.setattr(record_samples, "SAMPLE", 8)
    t, d = TestRecordRow, RecordDigest
    with inst.db.read() as s:
        rows = s.execute(select(t.outcome, d.failed_steps).join(d, d.record_id == t.id, isouter=True)).all()
        digests = s.execute(select(func.count()).select_from(d)).scalar_one()
    assert rows and digests == len(rows)  # the write path wrote one for each record, every format
    assert all((f is not None) == (o != "PASS") for o, f in rows)

    from_columns = _answers(inst, made)
    _delete_digests(inst)
    from_json = _answers(inst, made)

    assert from_columns.keys() == from_json.keys()
    different = [k for k in from_columns if not _same(from_columns[k], from_json[k])]
    assert not different, (different[:3], [(from_columns[k], from_json[k]) for k in different[:1]])
    some = [v for k, v in from_columns.items() if k.startswith("failing") and v["units"]]
    assert len(some) > 3 and any(v["sampled"] for v in some) == (limits == "small")


def test_the_migration_writes_what_the_write_path_wrote(any_instance: Instance) -> None:
    inst = any_instance
    _store(inst)
    t, d = TestRecordRow, RecordDigest
    with inst.db.read() as s:
        rows = s.execute(
            select(t.outcome, t.record_json, d.measured, d.failed_steps).join(d, d.record_id == t.id, isouter=True)
        ).all()
    digested = _migration()._digested
    for outcome, body, measured, failed_steps in rows:
        assert digested(outcome, body) == {"measured": measured, "failed_steps": failed_steps}, body


def test_failed_steps_say_what_failed_step_says() -> None:
    rng = random.Random(5)
    for i in range(60):
        parsed = stored_rows(json.loads(stored_text(_openhtf("SN", "fx", i, rng))))
        steps = set(record_digest.failed_steps(*parsed))
        assert steps == record_digest.steps_of(record_digest.digest(*parsed, failed=True)[0] or "")
        for phase in ("power", "radio", "flash", "skipped", "none"):
            for m in (None, "", "vcc", "tx_dbm", "rx_dbm", "z_rail", "v"):
                assert record_digest.failed_in(steps, phase, m) == samples.failed_step(parsed, phase, m)


@pytest.mark.migrations  # this instance runs every migration (no template copy)
def test_upgrading_to_0031_writes_each_stored_record_its_digest(any_instance: Instance) -> None:
    """Records stored before 0031 get the digest the write path gives them now (dropped with the table
    by the downgrade, written again by the upgrade's backfill)."""
    inst = any_instance
    _store(inst)
    d = RecordDigest
    query = select(d.record_id, d.measured, d.failed_steps).order_by(d.record_id)
    with inst.db.read() as s:
        written = s.execute(query).all()
    with inst.db.engine.begin() as conn:
        cfg = alembic_config(inst.db)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0030")
        assert "record_digests" not in inspect(conn).get_table_names()
        command.upgrade(cfg, "head")
    with inst.db.read() as s:
        assert s.execute(query).all() == written
