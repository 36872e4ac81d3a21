"""A provisioning batch's Idempotency-Key records the server process working on it (its liveness lease,
``runtime.liveness``): while that process lives a resend is ``idempotency_key_in_progress``; once its
lease has lapsed (the process died) the key is taken over at once, not after ``STALE_AFTER``; and the
SDK keeps resending an in-progress request long enough to cover that, within a bound."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.domain.idempotency import IdempotencyKey
from fabguard.fixture.client import FabGuardClientError, FixtureClient, tls_context
from fabguard.runtime.liveness import ProcessLiveness
from fabguard.service.core import idempotency
from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases
from fabguard.store.analytics_models import WorkerLease
from fabguard.store.models import Order, Unit
from tests.support import World, tested_device

KEY = "batch-key-1"
OPERATION = "POST /api/v1/units/provision-batch"


def another_process(world: World) -> Instance:
    """The same instance opened again, as a second server process would."""
    return Instance.open(world.inst.home, database_url=world.inst.db.url.render_as_string(False), migrate=False)


def taken_by_a_process(world: World, body: dict[str, Any], *, lives_for: timedelta) -> None:
    """A process whose liveness lease lasts ``lives_for`` from now took the batch's key, then stopped
    (killed: it beats no more and answers nothing)."""
    other = another_process(world)
    try:
        other.process_lease = "process:the-other-one"
        with other.db.transaction() as s:
            assert worker_leases.acquire(
                s, other.process_lease, other.process_lease, now=datetime.now(UTC), ttl=lives_for
            )
        keyed = idempotency.Keyed.of("fx-1", IdempotencyKey(KEY), OPERATION, body)
        assert idempotency.begin_batch(other, keyed) is None
    finally:
        other.close()


def batch(world: World, client: FixtureClient, serial: str) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """An order, a tested unit, and the batch asking for it (as the SDK's units, and as the request's body)."""
    order = world.order(quota=5)
    csr = tested_device(client, serial).csr_pem()  # once: a CSR's signature differs each time it is made
    return order, [(serial, csr)], {"order_id": order, "units": [{"serial": serial, "csr": csr}]}


def books(world: World, order: str) -> tuple[int, int]:
    with world.inst.db.read() as s:
        used = s.execute(select(Order.used).where(Order.id == order)).scalar_one()
        units = s.execute(select(func.count()).select_from(Unit)).scalar_one()
    return used, units


def test_a_batch_whose_process_died_is_taken_over_within_seconds_and_the_sdk_waits_for_it(
    any_world: World,
) -> None:
    client = any_world.fixture("fx-1")
    order, units, body = batch(any_world, client, "SN-HOLD-1")
    taken_by_a_process(any_world, body, lives_for=timedelta(seconds=1.5))
    with httpx.Client(base_url=any_world.url, verify=tls_context(client.credentials), timeout=30) as http:
        waiting = http.post("/api/v1/units/provision-batch", json=body, headers={"Idempotency-Key": KEY})
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "idempotency_key_in_progress"
    t0 = time.monotonic()
    results = client.provision_batch(order, units, idempotency_key=KEY)
    took = time.monotonic() - t0
    again = client.provision_batch(order, units, idempotency_key=KEY)
    assert [r["status"] for r in results] == ["issued"] and again == results
    assert took < 8.0, f"the takeover took {took:.1f} s"
    assert books(any_world, order) == (1, 1)


def test_a_batch_held_by_a_live_process_stays_in_progress_and_the_sdk_gives_up_within_its_bound(
    world: World,
) -> None:
    client = world.fixture("fx-1")
    order, units, body = batch(world, client, "SN-HOLD-2")
    taken_by_a_process(world, body, lives_for=timedelta(hours=1))
    with FixtureClient(client.credentials, busy_retry_seconds=1.0, retry_delay=0.1) as impatient:
        t0 = time.monotonic()
        with pytest.raises(FabGuardClientError) as caught:
            impatient.provision_batch(order, units, idempotency_key=KEY)
        took = time.monotonic() - t0
    assert caught.value.code == "idempotency_key_in_progress"
    assert 0.7 <= took < 4.0, f"gave up after {took:.1f} s"
    assert books(world, order) == (0, 0)


def test_a_starting_server_on_sqlite_frees_the_keys_of_processes_gone_before_it(any_world: World) -> None:
    """One server process serves a SQLite database: whoever held a key before it started is dead. On
    PostgreSQL another process may be alive: its key waits for its lease to lapse."""
    client = any_world.fixture("fx-1")
    order, _, body = batch(any_world, client, "SN-HOLD-3")
    taken_by_a_process(any_world, body, lives_for=timedelta(hours=1))
    restarted = another_process(any_world)
    liveness = ProcessLiveness(restarted).start()
    try:
        with httpx.Client(base_url=any_world.url, verify=tls_context(client.credentials), timeout=30) as http:
            answer = http.post("/api/v1/units/provision-batch", json=body, headers={"Idempotency-Key": KEY})
    finally:
        liveness.stop()
        restarted.close()
    if any_world.inst.db.is_sqlite:
        assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "issued"
        assert books(any_world, order) == (1, 1)
    else:
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "idempotency_key_in_progress"
        assert books(any_world, order) == (0, 0)


def test_a_server_process_beats_while_it_runs_and_gives_its_lease_up_when_it_stops(any_instance: Instance) -> None:
    liveness = ProcessLiveness(any_instance, beat_seconds=0.05).start()
    try:
        assert any_instance.process_lease == liveness.name
        with any_instance.db.read() as s:
            first = worker_leases.holder_of(s, liveness.name, now=datetime.now(UTC))
        time.sleep(0.3)
        with any_instance.db.read() as s:
            later = s.execute(select(WorkerLease.expires_at).where(WorkerLease.name == liveness.name)).scalar_one()
        assert first == liveness.name
        assert later > datetime.now(UTC) + liveness.dead_after - timedelta(seconds=0.25)
    finally:
        liveness.stop()
    assert any_instance.process_lease is None
    with any_instance.db.read() as s:
        assert worker_leases.holder_of(s, liveness.name, now=datetime.now(UTC)) is None
