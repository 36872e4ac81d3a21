"""Group commit (service.provisioning_group, runtime.group_commit): many units in one transaction, each
decided as it would be alone, none answered before the commit; a failed group decided again unit by unit."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from fabguard.api.parsing import unit_request
from fabguard.domain.errors import FabGuardError, InvalidRequest, Refusal, Unavailable
from fabguard.domain.idempotency import IdempotencyKey
from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.idempotency import Answer, Keyed
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import issuance, testrecords
from fabguard.service.provisioning.group import Job, Outcome, run_jobs
from fabguard.service.provisioning.unit_requests import Provisioned, UnparsedUnit
from fabguard.store import idempotency as key_rows
from fabguard.store.issuance_facts import lock_order
from fabguard.store.models import Event, Order, Unit
from tests.service.provisioning.test_quota_concurrency import assert_gap_free_events
from tests.support import create_pg_database, drop_pg_database, new_instance

PRODUCT, SITE = "sensor", "cm-a"
FIXTURE = FixtureFacts("fx-1", SITE, False)
MAX_CSR = 8192


def _prepare(inst: Instance, serials: list[str], *, failed: tuple[str, ...] = ()) -> None:
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor", actor="test")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="test")
    fixtures.create_fixture(inst, fixture_id=FixtureId(FIXTURE.id), site_id=SiteId(SITE), actor="test")
    for order_id, quota in (("po-a", 8), ("po-b", 3)):
        orders.create_order(
            inst,
            order_id=OrderId(order_id),
            product_id=ProductId(PRODUCT),
            site_id=SiteId(SITE),
            quota=quota,
            actor="t",
        )
    if not serials:
        return
    rng = random.Random(3)
    records = [openhtf_record(s, FIXTURE.id, fail=s in failed, rng=rng) for s in serials]
    results = testrecords.record_tests(inst, FIXTURE, records)
    assert {r["status"] for r in results} == {"stored"}


def _key(value: str, body: object) -> Keyed:
    return Keyed.of(FIXTURE.id, IdempotencyKey.parse(value), "POST /api/v1/units/provision", body)


def _mixed_jobs() -> tuple[list[Job], list[str], tuple[str, ...]]:
    """Fresh units beyond the quota, a retry and a clone inside the group, a failed and a missing test,
    another order, an unknown order, an unparsed request, and keyed units with a resend among them."""
    devices = [SimulatedDevice(f"SN{i:04d}") for i in range(14)]
    csr = [d.csr_pem() for d in devices]
    jobs = [Job(FIXTURE, unit_request("po-a", f"SN{i:04d}", csr[i], max_csr_bytes=MAX_CSR)) for i in range(10)]
    jobs.append(Job(FIXTURE, unit_request("po-a", "SN0000", csr[0], max_csr_bytes=MAX_CSR)))  # a retry: replayed
    jobs.append(
        Job(FIXTURE, unit_request("po-b", "SN0099", devices[1].clone_as("SN0099").csr_pem(), max_csr_bytes=MAX_CSR))
    )  # a clone: key_reused
    jobs.append(Job(FIXTURE, unit_request("po-b", "SN0010", csr[10], max_csr_bytes=MAX_CSR)))  # its test failed
    jobs.append(
        Job(FIXTURE, unit_request("po-b", "SN0077", SimulatedDevice("SN0077").csr_pem(), max_csr_bytes=MAX_CSR))
    )  # no test at all
    jobs.append(Job(FIXTURE, unit_request("po-zz", "SN0012", csr[12], max_csr_bytes=MAX_CSR)))  # no such order
    jobs.append(Job(FIXTURE, unit_request("po-b", "bad serial!", csr[12], max_csr_bytes=MAX_CSR)))  # unparsed
    body = {"order_id": "po-b", "serial": "SN0013"}
    keyed = unit_request("po-b", "SN0013", csr[13], max_csr_bytes=MAX_CSR)
    jobs.append(Job(FIXTURE, keyed, _key("k-13", body)))
    jobs.append(Job(FIXTURE, keyed, _key("k-13", body)))  # the resend of a keyed request: its answer again
    jobs.append(
        Job(
            FIXTURE,
            unit_request("po-b", "SN0011", devices[2].clone_as("SN0011").csr_pem(), max_csr_bytes=MAX_CSR),
            _key("k-11", {"s": 11}),
        )
    )
    serials = [f"SN{i:04d}" for i in range(14) if i != 12] + ["SN0099"]
    return jobs, serials, ("SN0010",)


def _shape(outcome: Outcome) -> tuple[object, ...]:
    """What a caller sees of an outcome, without the certificate bytes (which differ between instances)."""
    if isinstance(outcome, Provisioned):
        return ("issued", outcome.serial, outcome.order_id, outcome.replayed)
    if isinstance(outcome, Answer):
        return (
            "answer",
            outcome.status,
            outcome.body.get("serial"),
            outcome.body.get("replayed"),
            outcome.replayed,
            outcome.body.get("error", {}).get("code") if isinstance(outcome.body.get("error"), dict) else None,
        )
    assert isinstance(outcome, FabGuardError), outcome
    return ("error", outcome.code)


def _books(inst: Instance) -> tuple[object, ...]:
    with inst.db.read() as s:
        used = {o: n for o, n in s.execute(select(Order.id, Order.used))}
        units = sorted((u, o) for u, o in s.execute(select(Unit.serial, Unit.order_id)))
        events = [
            (kind, serial, code)
            for kind, serial, code in s.execute(
                select(Event.kind, Event.serial, Event.code).where(Event.kind.like("unit.%")).order_by(Event.seq)
            )
        ]
    return used, units, sorted(events, key=repr)


class _Commits:
    """Counts the transactions committed on the instance's engine (the real engine, listened to)."""

    def __init__(self, inst: Instance) -> None:
        self.count = 0
        event.listen(inst.db.engine, "commit", self._on_commit)

    def _on_commit(self, _conn: object) -> None:
        self.count += 1


@pytest.fixture
def second_instance(tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    url = create_pg_database() if database_url is not None else None
    inst = new_instance(tmp_path / "alone", url)
    try:
        yield inst
    finally:
        inst.db.dispose()
        if url is not None:
            drop_pg_database(url)


def test_one_group_decides_every_unit_as_it_would_be_decided_alone(
    any_instance: Instance, second_instance: Instance
) -> None:
    jobs, serials, failed = _mixed_jobs()
    for inst in (any_instance, second_instance):
        _prepare(inst, serials, failed=failed)
    commits = _Commits(any_instance)
    grouped = run_jobs(any_instance, jobs)
    group_commits = commits.count
    alone = [run_jobs(second_instance, [job])[0] for job in jobs]

    assert [_shape(o) for o in grouped] == [_shape(o) for o in alone]
    assert _books(any_instance) == _books(second_instance)
    # Three transactions: the units before the first repeat (the retry), then from it to the next repeat
    # (the keyed resend), then the rest; one at a time took one per unit.
    assert group_commits == 3
    shapes = [_shape(o) for o in grouped]
    assert shapes[:8] == [("issued", f"SN{i:04d}", "po-a", False) for i in range(8)]
    assert shapes[8:10] == [("error", "quota_exhausted")] * 2
    assert shapes[10] == ("issued", "SN0000", "po-a", True)
    assert shapes[11:16] == [
        ("error", c) for c in ("key_reused", "test_failed", "test_missing", "order_not_found", "serial_invalid")
    ]
    assert shapes[16] == ("answer", 201, "SN0013", False, False, None)
    assert shapes[17] == ("answer", 201, "SN0013", False, True, None)  # the stored answer, replayed
    assert shapes[18] == ("answer", 409, None, None, False, "key_reused")  # the clone's refusal, kept under its key
    used, units, _ = _books(any_instance)
    assert used == {"po-a": 8, "po-b": 1}
    assert len(units) == 9
    assert_gap_free_events(any_instance)


def test_a_group_answers_each_unit_only_with_its_own_certificate(any_instance: Instance) -> None:
    serials = [f"SN{i:04d}" for i in range(6)]
    _prepare(any_instance, serials)
    devices = [SimulatedDevice(s) for s in serials]
    jobs = [Job(FIXTURE, unit_request("po-a", d.serial, d.csr_pem(), max_csr_bytes=MAX_CSR)) for d in devices]
    outcomes = run_jobs(any_instance, jobs)
    with any_instance.db.read() as s:
        recorded = {u: pem for u, pem in s.execute(select(Unit.serial, Unit.certificate_pem))}
    for device, outcome in zip(devices, outcomes, strict=True):
        assert isinstance(outcome, Provisioned)
        assert outcome.certificate_pem == recorded[device.serial]
        cert = x509.load_pem_x509_certificate(outcome.certificate_pem.encode())
        assert cert.public_key() == device.key.public_key()


def test_the_writer_groups_requests_that_arrive_while_it_is_busy(any_instance: Instance) -> None:
    serials = [f"SN{i:04d}" for i in range(24)]
    _prepare(any_instance, serials)
    committer = GroupCommitter(any_instance).start()
    outcomes: dict[int, Outcome] = {}
    asking = threading.Event()

    def ask(i: int) -> None:
        unit = unit_request("po-a", serials[i], SimulatedDevice(serials[i]).csr_pem(), max_csr_bytes=MAX_CSR)
        asking.set()
        outcomes[i] = committer.run([Job(FIXTURE, unit)])[0]

    try:
        # Hold the order (on SQLite the writer lock too): the writer's first group waits, the others queue.
        with any_instance.db.transaction() as s:
            assert lock_order(s, "po-a") is not None
            first = threading.Thread(target=ask, args=(0,))
            first.start()
            asking.wait(20)
            time.sleep(0.2)
            # The first request was queued right after ``asking``; an empty queue now means the writer took
            # it alone and waits for the lock.
            assert committer._queue.qsize() == 0 and first.is_alive()
            rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, 24)]
            for t in rest:
                t.start()
            _until(lambda: committer._queue.qsize() == 23)
        for t in [first, *rest]:
            t.join(30)
    finally:
        committer.stop()
    assert (committer.groups, committer.units) == (2, 24)
    issued = [i for i, o in outcomes.items() if isinstance(o, Provisioned)]
    refused = [o.code for o in outcomes.values() if isinstance(o, Refusal)]
    assert len(issued) == 8 and refused == ["quota_exhausted"] * 16
    assert _books(any_instance)[0]["po-a"] == 8
    assert_gap_free_events(any_instance)


def test_a_stopped_writer_decides_in_the_callers_thread(instance: Instance) -> None:
    _prepare(instance, ["SN0001"])
    committer = GroupCommitter(instance).start()
    committer.stop()
    unit = unit_request("po-a", "SN0001", SimulatedDevice("SN0001").csr_pem(), max_csr_bytes=MAX_CSR)
    assert isinstance(committer.run([Job(FIXTURE, unit)])[0], Provisioned)
    assert committer.groups == 0


def test_an_unparsed_request_that_is_no_refusal_is_raised_unrecorded(instance: Instance) -> None:
    _prepare(instance, [])
    outcome = run_jobs(instance, [Job(FIXTURE, UnparsedUnit(InvalidRequest("no"), None, None))])[0]
    assert isinstance(outcome, InvalidRequest)
    with instance.db.read() as s:
        assert s.execute(select(func.count()).select_from(Event).where(Event.kind == "unit.refused")).scalar() == 0


@pytest.mark.postgres
def test_a_group_whose_key_a_rival_committed_is_decided_again_unit_by_unit(
    tmp_path: Path, database_url: str | None
) -> None:
    """On PostgreSQL another process can answer an idempotency key while a group works on it: the group
    rolls back whole, and each unit is decided alone (the keyed one replays the rival's answer)."""
    if database_url is None:
        pytest.skip("PostgreSQL only: on SQLite one writer runs at a time")
    inst = new_instance(tmp_path / "home", database_url)
    try:
        serials = ["SN0001", "SN0002", "SN0003"]
        _prepare(inst, serials)
        jobs = [
            Job(FIXTURE, unit_request("po-a", s, SimulatedDevice(s).csr_pem(), max_csr_bytes=MAX_CSR)) for s in serials
        ]
        key = _key("k-rival", {"serial": "SN0001"})
        jobs[0] = Job(FIXTURE, jobs[0].request, key)
        rival = inst.db.engine.connect()
        tx = rival.begin()
        rival_session = Session(bind=rival)
        assert key_rows.insert_key(rival_session, FIXTURE.id, key.key, 0, key.fingerprint, inst.clock())
        result: list[Outcome] = []
        group = threading.Thread(target=lambda: result.extend(run_jobs(inst, jobs)))
        group.start()
        with inst.db.engine.connect() as watch:  # the group waits on the rival's key
            _until(lambda: watch.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar() > 0)
        key_rows.set_answer(
            rival_session, FIXTURE.id, key.key, 0, 201, '{"serial":"SN0001","certificate":"from the rival"}'
        )
        tx.commit()
        rival.close()
        group.join(30)
        assert not group.is_alive()
        assert (
            isinstance(result[0], Answer) and result[0].replayed and result[0].body["certificate"] == "from the rival"
        )
        assert all(isinstance(o, Provisioned) and not o.replayed for o in result[1:])
        used, units, events = _books(inst)
        assert used["po-a"] == 2 and [u[0] for u in units] == ["SN0002", "SN0003"]
        assert [e for e in events if e[0] == "unit.provisioned"] == [
            ("unit.provisioned", "SN0002", None),
            ("unit.provisioned", "SN0003", None),
        ]
        assert_gap_free_events(inst)
    finally:
        inst.db.dispose()


def _until(condition: object, timeout: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_units_are_decided_in_the_order_they_came_even_when_one_must_wait(
    any_instance: Instance, second_instance: Instance
) -> None:
    """One unit of quota left: a clone of SN0001 (refused), SN0001 itself, then SN0002. SN0001 repeats the
    clone's serial, so it waits for the next round, and SN0002 with it: SN0001 gets the last unit, as it
    would one at a time, and SN0002 is quota_exhausted."""
    original = SimulatedDevice("SN0090")
    jobs = [
        Job(FIXTURE, unit_request("po-b", "SN0001", original.clone_as("SN0001").csr_pem(), max_csr_bytes=MAX_CSR)),
        Job(FIXTURE, unit_request("po-b", "SN0001", SimulatedDevice("SN0001").csr_pem(), max_csr_bytes=MAX_CSR)),
        Job(FIXTURE, unit_request("po-b", "SN0002", SimulatedDevice("SN0002").csr_pem(), max_csr_bytes=MAX_CSR)),
    ]
    first = [
        Job(FIXTURE, unit_request("po-b", "SN0090", original.csr_pem(), max_csr_bytes=MAX_CSR)),
        Job(FIXTURE, unit_request("po-b", "SN0091", SimulatedDevice("SN0091").csr_pem(), max_csr_bytes=MAX_CSR)),
    ]
    shapes = []
    for inst, grouped in ((any_instance, True), (second_instance, False)):
        _prepare(inst, ["SN0001", "SN0002", "SN0090", "SN0091"])
        assert all(isinstance(o, Provisioned) for o in run_jobs(inst, first))  # po-b: 2 of 3 used
        outcomes = run_jobs(inst, jobs) if grouped else [run_jobs(inst, [j])[0] for j in jobs]
        shapes.append([_shape(o) for o in outcomes])
    assert (
        shapes[0]
        == shapes[1]
        == [
            ("error", "key_reused"),
            ("issued", "SN0001", "po-b", False),
            ("error", "quota_exhausted"),
        ]
    )


@pytest.mark.postgres
def test_a_keyed_batch_that_meets_an_outage_fails_whole_and_its_resend_provisions(
    tmp_path: Path, database_url: str | None
) -> None:
    """A rival holds the order past the lock timeout: the group is an outage (503) for all its units at
    once (not decided again unit by unit, each waiting out the timeout), the batch keeps no answer, and
    the same batch sent again once the rival let go provisions every unit."""
    if database_url is None:
        pytest.skip("PostgreSQL only: SQLite's writer lock has no lock timeout of its own")
    inst = new_instance(tmp_path / "home", database_url + "?options=-c%20lock_timeout%3D300")
    try:
        serials = [f"SN{i:04d}" for i in range(6)]
        _prepare(inst, serials)
        pairs = [
            (unit_request("po-a", s, SimulatedDevice(s).csr_pem(), max_csr_bytes=MAX_CSR), {"serial": s})
            for s in serials
        ]
        key = Keyed.of(FIXTURE.id, IdempotencyKey.parse("batch-1"), "POST /api/v1/units/provision-batch", {"b": 1})
        begun: list[object] = []
        on_begin = begun.append
        with inst.db.engine.connect() as rival, rival.begin():
            assert lock_order(Session(bind=rival), "po-a") is not None
            event.listen(inst.db.engine, "begin", on_begin)
            with pytest.raises(Unavailable) as caught:
                issuance.provision_batch_once(inst, FIXTURE, pairs, key)
        assert "lock timeout" in caught.value.message and not caught.value.contended
        # The batch's key taken, the group, the key freed: no transaction per unit.
        assert len(begun) == 3
        event.remove(inst.db.engine, "begin", on_begin)
        assert _books(inst)[0]["po-a"] == 0
        again = issuance.provision_batch_once(inst, FIXTURE, pairs, key)
        assert again.status == 200 and not again.replayed
        assert [r["status"] for r in again.body["results"]] == ["issued"] * 6
        assert _books(inst)[0]["po-a"] == 6
        assert_gap_free_events(inst)
    finally:
        inst.db.dispose()
