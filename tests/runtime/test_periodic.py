"""The one shape of a background worker: rounds on a thread, a failed round logged and retried, its lease
given up as the thread ends."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from fabguard.runtime.periodic import PeriodicWorker
from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases

LEASE = "test-periodic"


class Flaky(PeriodicWorker):
    """Takes its lease, then fails its second round and counts the others."""

    thread_name = "fabguard-test-periodic"
    log = logging.getLogger("fabguard.test.periodic")
    round_failed = "test round failed"
    lease: worker_leases.Hold

    def __init__(self, inst: Instance) -> None:
        hold = worker_leases.Hold(inst.db, LEASE, ttl=timedelta(seconds=30), clock=lambda: datetime.now(UTC))
        super().__init__(inst, 0.01, lease=hold)
        self.rounds_done = 0
        self.third = threading.Event()

    def run_round(self) -> None:
        self.rounds_done += 1
        if self.rounds_done == 1:
            self.lease.take()
        if self.rounds_done == 2:
            raise RuntimeError("boom")
        if self.rounds_done >= 3:
            self.third.set()


def holder(inst: Instance) -> str | None:
    with inst.db.read() as s:
        return worker_leases.holder_of(s, LEASE, now=datetime.now(UTC))


def test_a_failed_round_is_logged_and_the_next_one_runs_and_the_lease_goes_with_the_thread(
    any_instance: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Flaky(any_instance).start()
    try:
        assert worker.third.wait(10), "the worker stopped after its failed round"
        assert holder(any_instance) == worker.lease.holder
    finally:
        worker.stop()
    assert not any(t.name == Flaky.thread_name for t in threading.enumerate())
    assert [r.message for r in caplog.records if r.name == "fabguard.test.periodic"] == ["test round failed"]
    assert holder(any_instance) is None  # released, not left to expire


def test_stop_before_the_first_interval_runs_no_round(instance: Instance) -> None:
    worker = Flaky(instance)
    worker.interval = 60.0
    worker.start()
    started = time.monotonic()
    worker.stop()
    assert worker.rounds_done == 0 and time.monotonic() - started < 5
