"""The field-check writer (runtime.field_writer): answers queued while it is busy are decided in one group
(one transaction) with each request getting its own outcomes; when its thread dies, every request it
holds and every later one is answered 503 ``field_writer_down`` at once, none left waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from fabguard.domain.errors import InvalidRequest, Unavailable
from fabguard.runtime.field_writer import FieldWriter
from fabguard.service.core.instance import Instance
from fabguard.service.field.checks import Job, Outcome, Refused, decide_group
from fabguard.service.field.genuineness import Origin
from fabguard.store.models import Event


class WriterKilled(BaseException):
    """What ends a thread (not an ``Exception`` a group's failure is caught as)."""


def refused(i: int) -> Job:
    """A job the group records as a refusal: a real decision, one event, no device needed."""
    return Refused(InvalidRequest(f"answer {i} is malformed", code="field_signature_malformed"), Origin("test"))


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_requests_queued_while_the_writer_is_busy_are_one_group_each_getting_its_own(instance: Instance) -> None:
    entered, release = threading.Event(), threading.Event()
    groups: list[int] = []

    def gated(jobs: Sequence[Job]) -> list[Outcome]:
        groups.append(len(jobs))
        if len(groups) == 1:
            entered.set()
            release.wait(10)
        return decide_group(instance, jobs)

    writer = FieldWriter(instance, decide=gated).start()
    got: dict[int, list[Outcome]] = {}
    threads = [
        threading.Thread(target=lambda i=i: got.__setitem__(i, writer.run([refused(i), refused(i)]))) for i in range(4)
    ]
    try:
        threads[0].start()
        assert entered.wait(10)
        for t in threads[1:]:
            t.start()
        until(lambda: writer._queue.qsize() == 3)
        release.set()
        for t in threads:
            t.join(10)
    finally:
        release.set()
        writer.stop()
    assert groups == [2, 6] and (writer.groups, writer.checks) == (2, 8)
    for i in range(4):
        assert [str(o) for o in got[i]] == [f"answer {i} is malformed"] * 2
    with instance.db.read() as s:
        kinds = [e.kind for e in s.query(Event).filter(Event.kind == "field.refused")]
    assert len(kinds) == 8


def test_a_writer_that_dies_fails_its_group_its_queue_and_later_requests_at_once(instance: Instance) -> None:
    entered, release = threading.Event(), threading.Event()

    def dying(jobs: Sequence[Job]) -> list[Outcome]:
        entered.set()
        release.wait(10)
        raise WriterKilled

    writer = FieldWriter(instance, decide=dying).start()
    got: dict[int, list[Outcome]] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, writer.run([refused(i)]))) for i in range(3)]
    try:
        threads[0].start()
        assert entered.wait(10)
        for t in threads[1:]:
            t.start()
        until(lambda: writer._queue.qsize() == 2)
        release.set()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads), "a request waits for a writer that is gone"
        outcomes = [o for i in range(3) for o in got[i]]
        assert all(isinstance(o, Unavailable) and (o.code, o.status) == ("field_writer_down", 503) for o in outcomes)
        assert writer.down
        t0 = time.monotonic()
        [later] = writer.run([refused(9)])
        assert time.monotonic() - t0 < 1.0 and isinstance(later, Unavailable) and later.code == "field_writer_down"
    finally:
        release.set()
        writer.stop()


def test_a_failed_group_gives_each_check_its_own_error_and_a_dead_writer_fails_its_check(instance: Instance) -> None:
    calls = 0

    def buggy_then_dying(jobs: Sequence[Job]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in one group")
        raise WriterKilled

    writer = FieldWriter(instance, decide=buggy_then_dying).start()
    try:
        failed = writer.run([refused(1), refused(2)])
        assert all(isinstance(o, RuntimeError) for o in failed) and failed[0] is not failed[1]
        assert not writer.down
        writer.check()
        [dead] = writer.run([refused(3)])
        assert isinstance(dead, Unavailable) and dead.code == "field_writer_down"
        with pytest.raises(Unavailable) as caught:
            writer.check()
        assert (caught.value.code, caught.value.status) == ("field_writer_down", 503)
    finally:
        writer.stop()
