"""The group's history read binds the test gate to the order's site: in one group with orders of two
sites, each unit is decided by the latest record of its order's site alone, in one set-based read of
the test records for the whole group, served by an index."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import event, text

from fabguard.api.parsing import unit_request
from fabguard.domain.errors import Refusal
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.service.provisioning.group import Job, run_jobs
from fabguard.service.provisioning.unit_requests import Provisioned
from fabguard.store.issuance_facts import latest_tests_query

FX_A, FX_B = FixtureFacts("fx-a", "cm-a", False), FixtureFacts("fx-b", "cm-b", False)
MAX_CSR = 8192


def _prepare(inst: Instance) -> None:
    product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="t")
    for fx in (FX_A, FX_B):
        product_catalog.create_site(inst, site_id=SiteId(fx.site_id), name=fx.site_id, actor="t")
        fixtures.create_fixture(inst, fixture_id=FixtureId(fx.id), site_id=SiteId(fx.site_id), actor="t")
        orders.create_order(
            inst,
            order_id=OrderId(f"po-{fx.site_id}"),
            product_id=ProductId("sensor"),
            site_id=SiteId(fx.site_id),
            quota=10,
            actor="t",
        )


def _upload(inst: Instance, fixture: FixtureFacts, serial: str, *, passed: bool, claims: str | None = None) -> None:
    record = openhtf_record(serial, claims or fixture.id, fail=not passed, rng=random.Random(serial))
    testrecords.record_test(inst, fixture, record)


def _outcome(outcome: object) -> str:
    if isinstance(outcome, Provisioned):
        return "issued"
    assert isinstance(outcome, Refusal), outcome
    return outcome.code


def test_one_group_decides_each_unit_by_its_own_sites_latest_record(any_instance: Instance) -> None:
    inst = any_instance
    _prepare(inst)
    _upload(inst, FX_B, "SN-1", passed=True)  # tested only at B, built at A
    _upload(inst, FX_A, "SN-2", passed=True)
    _upload(inst, FX_B, "SN-2", passed=False)  # a later FAIL at B, built at A
    _upload(inst, FX_A, "SN-3", passed=False)
    _upload(inst, FX_B, "SN-3", passed=True)  # a later PASS at B, built at A
    _upload(inst, FX_B, "SN-4", passed=True)
    _upload(inst, FX_A, "SN-4", passed=False)  # a later FAIL at A, built at B
    _upload(inst, FX_B, "SN-5", passed=True, claims=FX_A.id)  # B claims to be A's station, built at A
    _upload(inst, FX_A, "SN-6", passed=True)
    built = {"SN-1": FX_A, "SN-2": FX_A, "SN-3": FX_A, "SN-4": FX_B, "SN-5": FX_A, "SN-6": FX_A}
    jobs = [
        Job(fx, unit_request(f"po-{fx.site_id}", serial, SimulatedDevice(serial).csr_pem(), max_csr_bytes=MAX_CSR))
        for serial, fx in built.items()
    ]
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(inst.db.engine, "before_cursor_execute", seen)
    try:
        outcomes = run_jobs(inst, jobs)
    finally:
        event.remove(inst.db.engine, "before_cursor_execute", seen)

    assert [_outcome(o) for o in outcomes] == [
        "test_missing",
        "issued",
        "test_failed",
        "issued",
        "test_missing",
        "issued",
    ]
    # One transaction for the group, and one read of the test records for all of it.
    assert sum("FROM test_records" in s for s in statements) == 1
    assert orders.get_order(inst, "po-cm-a").used == 2
    assert orders.get_order(inst, "po-cm-b").used == 1


def test_records_from_elsewhere_are_kept_and_name_the_uploading_fixture(any_instance: Instance) -> None:
    inst = any_instance
    _prepare(inst)
    _upload(inst, FX_B, "SN-7", passed=True, claims="fx-a")
    _upload(inst, FX_A, "SN-7", passed=False)

    kept = testrecords.records_for_serial(inst, "SN-7")

    assert [(r["fixture_id"], r["station_id"], r["declared_station_id"], r["site_id"]) for r in kept] == [
        ("fx-b", "fx-b", "fx-a", "cm-b"),
        ("fx-a", "fx-a", "fx-a", "cm-a"),
    ]


def test_the_latest_record_per_site_is_read_through_an_index(instance: Instance) -> None:
    """SQLite's plan for the gate's query searches the test records (by index), never scans them."""
    query = latest_tests_query(["SN-1", "SN-2"], ["cm-a", "cm-b"])
    compiled = query.compile(instance.db.engine, compile_kwargs={"literal_binds": True})
    with instance.db.read() as s:
        plan = [row[-1] for row in s.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
    on_records = [step for step in plan if "test_records" in step]
    assert on_records and all(step.startswith("SEARCH") for step in on_records), plan
    assert any("ix_test_records_serial_site_id" in step for step in on_records), plan
