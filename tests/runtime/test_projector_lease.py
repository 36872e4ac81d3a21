"""The background projector: of several server processes only the holder of the ``projector`` lease folds;
a stopped holder hands over at once, a dead one when its lease expires, and reads never wait for either."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fabguard.domain.issuance import FixtureFacts
from fabguard.domain.values import FixtureId, SiteId
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.runtime.workers import PROJECTOR_LEASE, Projector
from fabguard.service.analytics import dashboard_queries
from fabguard.service.catalog import fixtures, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning import testrecords
from fabguard.store import rollups, worker_leases
from fabguard.store.eventlog import event_count


def upload(inst: Instance, first: int, n: int) -> None:
    rng = random.Random(first)
    batch = [openhtf_record(f"SN{first + i:08d}", "fx-1", fail=False, rng=rng) for i in range(n)]
    results = testrecords.record_tests(inst, FixtureFacts("fx-1", "cm-a", False), batch)
    assert all(r["status"] == "stored" for r in results)


def cursor(inst: Instance) -> int:
    with inst.db.read() as s:
        return rollups.read_cursor(s)


def events(inst: Instance) -> int:
    with inst.db.read() as s:
        return event_count(s)


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_projector_folds_and_hands_over_when_stopped_or_dead(any_instance: Instance) -> None:
    inst = any_instance
    product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
    fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
    other = Instance.open(inst.home)  # a second server process: its own engine and connections
    a = Projector(inst, interval=0.02, lease_seconds=1.5).start()
    try:
        wait_for(lambda: a.lease.held)
        b = Projector(other, interval=0.02, lease_seconds=1.5).start()
        try:
            upload(inst, 0, 30)
            # A projector counts what it folded just after its transaction commits the cursor: wait for
            # the count, not the cursor, or the check can run between the two.
            wait_for(lambda: a.folded + b.folded == events(inst))
            time.sleep(0.3)  # b has had many rounds in which to fold, if it were to
            assert a.folded == events(inst) and b.folded == 0 and cursor(inst) == events(inst)
            a.stop()  # releases the lease: b takes it at its next claim
            upload(inst, 100, 20)
            wait_for(lambda: a.folded + b.folded == events(inst))
            assert cursor(inst) == events(inst) and b.folded > 0
        finally:
            b.stop()
        # A holder that died without releasing: nobody folds in the background until its lease expires,
        # but a read catches the projection up itself.
        with inst.db.transaction() as s:
            assert worker_leases.acquire(s, PROJECTOR_LEASE, "dead", now=datetime.now(UTC), ttl=timedelta(seconds=2))
        c = Projector(other, interval=0.02, lease_seconds=1.5).start()
        try:
            upload(inst, 200, 10)
            time.sleep(0.5)
            assert c.folded == 0 and cursor(inst) < events(inst)
            assert dashboard_queries.refresh(inst) == 0  # what a dashboard read does
            upload(inst, 300, 10)
            wait_for(lambda: c.folded == 10, seconds=10)  # taken over once the dead holder's lease ran out
            assert c.lease.held and cursor(inst) == events(inst)
        finally:
            c.stop()
    finally:
        a.stop()
        other.close()
