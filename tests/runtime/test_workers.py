"""A server's background workers share one life cycle: started together, stopped together, leases handed over."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from fabguard.runtime.workers import PROJECTOR_LEASE, BackgroundWorkers
from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases

NAMES = {"fabguard-maintenance", "fabguard-projector", "fabguard-webhooks"}


def running() -> Counter[str]:
    """The workers' threads alive in this process (other tests' servers may have their own)."""
    return Counter(t.name for t in threading.enumerate() if t.name in NAMES)


def test_workers_start_together_and_stop_handing_the_projector_lease_over_at_once(any_instance: Instance) -> None:
    before = running()
    workers = BackgroundWorkers(any_instance).start()
    try:
        assert running() == before + Counter(NAMES)
        deadline = time.monotonic() + 10
        while not workers.projector.lease.held:
            assert time.monotonic() < deadline, "the projector never took its lease"
            time.sleep(0.02)
    finally:
        workers.stop()
    assert running() == before
    with any_instance.db.read() as s:
        assert worker_leases.holder_of(s, PROJECTOR_LEASE, now=datetime.now(UTC)) is None
