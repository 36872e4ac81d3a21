"""The provisioning writer (runtime.group_commit) cannot hang the server: when its thread dies, the
requests it had taken and those queued behind it are failed at once, later ones too, each with an error
of its own (503 ``provisioning_writer_down``), and the process reports itself unhealthy."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import httpx
import pytest

from fabguard.domain.errors import FabGuardError, InvalidRequest, Unavailable
from fabguard.domain.issuance import FixtureFacts
from fabguard.fixture.client import tls_context
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome
from fabguard.service.provisioning.unit_requests import UnparsedUnit
from tests.support import World, tested_device

FIXTURE = FixtureFacts("fx-1", "cm-a", False)


class WriterKilled(BaseException):
    """What ends a thread: not an ``Exception`` a group's failure is caught as (as SystemExit, or an
    asynchronous exception landing in the writer's loop)."""


def job() -> Job:
    return Job(FIXTURE, UnparsedUnit(InvalidRequest("never decided"), None, None))


def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_writer_that_dies_fails_its_group_its_queue_and_later_requests_at_once(instance: Instance) -> None:
    entered, release = threading.Event(), threading.Event()

    def dying(jobs: Sequence[Job]) -> list[Outcome]:
        entered.set()
        release.wait(10)
        raise WriterKilled

    committer = GroupCommitter(instance, decide=dying).start()
    got: dict[int, list[Outcome]] = {}

    def ask(i: int, units: int) -> None:
        got[i] = committer.run([job() for _ in range(units)])

    first = threading.Thread(target=ask, args=(0, 2))
    first.start()
    assert entered.wait(10)
    queued = [threading.Thread(target=ask, args=(i, 1)) for i in (1, 2, 3)]
    for t in queued:
        t.start()
    until(lambda: committer._queue.qsize() == 3)
    release.set()
    for t in [first, *queued]:
        t.join(10)
    try:
        assert not any(t.is_alive() for t in [first, *queued]), "a request waits for a writer that is gone"
        outcomes = [o for i in range(4) for o in got[i]]
        assert len(outcomes) == 5
        for o in outcomes:
            assert isinstance(o, Unavailable) and (o.code, o.status) == ("provisioning_writer_down", 503)
        assert len({id(o) for o in outcomes}) == 5, "one exception object raised in several threads"
        assert committer.down

        t0 = time.monotonic()
        [later] = committer.run([job()])
        assert time.monotonic() - t0 < 1.0
        assert isinstance(later, Unavailable) and later.code == "provisioning_writer_down"
        with pytest.raises(FabGuardError) as caught:
            committer.check()
        assert (caught.value.code, caught.value.status) == ("provisioning_writer_down", 503)
    finally:
        release.set()
        committer.stop()


def test_each_job_gets_its_own_exception_even_when_its_group_shares_one(instance: Instance) -> None:
    shared = Unavailable("the database is away")
    committer = GroupCommitter(instance, decide=lambda jobs: [shared] * len(jobs)).start()
    try:
        outcomes = committer.run([job(), job(), job()])
    finally:
        committer.stop()
    assert all(isinstance(o, Unavailable) and o.code == "database_unavailable" for o in outcomes)
    assert all(str(o) == "the database is away" for o in outcomes)
    assert len({id(o) for o in outcomes}) == 3


def test_a_group_that_fails_with_a_bug_leaves_the_writer_alive(instance: Instance) -> None:
    calls = 0

    def buggy(jobs: Sequence[Job]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in one group")
        return [InvalidRequest("decided") for _ in jobs]

    committer = GroupCommitter(instance, decide=buggy).start()
    try:
        failed = committer.run([job(), job()])
        decided = committer.run([job()])
    finally:
        committer.stop()
    assert all(isinstance(o, RuntimeError) for o in failed) and failed[0] is not failed[1]
    assert isinstance(decided[0], InvalidRequest) and not committer.down
    committer.check()


def test_the_server_answers_503_and_reports_unhealthy_once_its_writer_died(world: World) -> None:
    order = world.order(quota=5)
    client = world.fixture("fx-1")
    device = tested_device(client, "SN-WRITER-1")
    committer: GroupCommitter = world.server.server.config.app.app.app.state.committer  # RequestLog(BodyLimit(FastAPI))

    def dying(jobs: Sequence[Job]) -> list[Outcome]:
        raise WriterKilled

    committer.decide = dying
    body = {"order_id": order, "serial": device.serial, "csr": device.csr_pem()}
    with httpx.Client(base_url=world.url, verify=tls_context(client.credentials), timeout=10) as http:
        assert http.get("/api/v1/health").status_code == 200
        first = http.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": "k-1"})
        later = http.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": "k-1"})
        health = http.get("/api/v1/health")
    for answer in (first, later):
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "provisioning_writer_down"
    assert health.status_code == 503 and health.json()["error"]["code"] == "provisioning_writer_down"


def test_a_submitted_request_is_answered_through_its_callback_after_its_group_and_never_before(
    instance: Instance,
) -> None:
    entered, release = threading.Event(), threading.Event()
    decided: list[int] = []

    def deciding(jobs: Sequence[Job]) -> list[Outcome]:
        entered.set()
        release.wait(10)
        decided.append(len(jobs))
        return [InvalidRequest(f"unit {i}") for i in range(len(jobs))]

    committer = GroupCommitter(instance, decide=deciding)
    assert committer.submit([job()], lambda outcomes: None) is False  # not running: the caller uses run
    committer.start()
    answers: list[list[Outcome]] = []
    got = threading.Event()
    try:
        assert committer.submit([job(), job()], lambda outcomes: (answers.append(outcomes), got.set())) is True
        assert entered.wait(10)
        assert answers == [] and not got.wait(0.2)  # nothing before the group is decided
        release.set()
        assert got.wait(10)
    finally:
        committer.stop()
    assert decided == [2] and [str(o) for o in answers[0]] == ["unit 0", "unit 1"]


def test_a_request_submitted_to_a_dead_writer_is_answered_writer_down_at_once(instance: Instance) -> None:
    def dying(jobs: Sequence[Job]) -> list[Outcome]:
        raise WriterKilled

    committer = GroupCommitter(instance, decide=dying).start()
    first: list[list[Outcome]] = []
    committer.submit([job()], first.append)
    until(lambda: committer.down and first)
    later: list[list[Outcome]] = []
    assert committer.submit([job(), job()], later.append) is True
    assert [o.code for o in later[0] if isinstance(o, FabGuardError)] == ["provisioning_writer_down"] * 2
    assert isinstance(first[0][0], Unavailable)
