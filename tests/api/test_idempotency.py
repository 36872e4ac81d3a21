"""Idempotency-Key on the fixture's writes: a resend after a lost answer stores nothing twice, a key
reused for another body or malformed is refused, one key sent by several threads at once does the work
once, a keyed refusal is recorded once, and keys are forgotten after the retention period."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from fabguard.domain.idempotency import IdempotencyKey
from fabguard.fixture.client import Credentials, FixtureClient, tls_context
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.service.core import idempotency
from fabguard.service.core.events import list_events
from fabguard.service.operations import maintenance
from fabguard.store.idempotency import IdempotencyKeyRow
from fabguard.store.models import Order, TestRecordRow
from tests.support import World

KEY = "IDEMPOTENCY-KEY"


def rec(serial: str, *, fail: bool = False, seed: int = 0) -> dict[str, Any]:
    return openhtf_record(serial, "st-1", fail=fail, rng=random.Random(seed))


def mtls(world: World, creds: Credentials) -> httpx.Client:
    return httpx.Client(base_url=world.url, verify=tls_context(creds), timeout=30)


def counts(world: World, kind: str) -> int:
    return len(list_events(world.inst, kind=kind, limit=1000))


def stored_records(world: World) -> int:
    with world.inst.db.read() as s:
        return int(s.execute(select(func.count()).select_from(TestRecordRow)).scalar_one())


def used(world: World, order_id: str) -> int:
    with world.inst.db.read() as s:
        return int(s.execute(select(Order.used).where(Order.id == order_id)).scalar_one())


class LosingTransport(httpx.HTTPTransport):
    """Hands each request to the server, then loses the first ``lose`` answers: the server did the work,
    the client never hears of it (as when a connection drops after the server's commit)."""

    def __init__(self, lose: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.lose = lose
        self.sent: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.headers.get("Idempotency-Key"))
        response = super().handle_request(request)
        response.read()
        if self.lose > 0:
            self.lose -= 1
            response.close()
            raise httpx.ReadError("the answer was lost", request=request)
        return response


def test_lost_answers_resent_by_the_sdk_store_each_record_and_unit_once(any_world: World) -> None:
    creds = any_world.credentials("fx-1")
    order = any_world.order(quota=5)
    transport = LosingTransport(1, verify=tls_context(creds))
    with FixtureClient(creds, transport=transport, retry_delay=0.01) as fx:
        one = fx.upload_test_record(rec("SN00000001"))
        transport.lose = 1
        batch = fx.upload_test_records([rec("SN00000002"), rec("SN00000003", fail=True)])
        device = SimulatedDevice("SN00000001")
        transport.lose = 1
        issued = fx.provision(order, "SN00000001", device.csr_pem())
        transport.lose = 1
        two, three = SimulatedDevice("SN00000002"), SimulatedDevice("SN00000003")
        results = fx.provision_batch(order, [(two.serial, two.csr_pem()), (three.serial, three.csr_pem())])
    # Each call was sent twice with one key (the first answer lost), the four calls with four keys.
    assert len(transport.sent) == 8 and len(set(transport.sent)) == 4
    assert transport.sent[0::2] == transport.sent[1::2]
    assert stored_records(any_world) == 3 and counts(any_world, "test.recorded") == 3
    assert one["serial"] == "SN00000001" and [r["status"] for r in batch] == ["stored", "stored"]
    assert not issued.replayed  # the answer kept with the work, not a per-serial retry
    assert [r["status"] for r in results] == ["issued", "refused"] and results[1]["error"]["code"] == "test_failed"
    assert counts(any_world, "unit.provisioned") == 2 and counts(any_world, "unit.refused") == 1
    assert used(any_world, order) == 2


def test_same_key_and_body_replays_the_answer_and_another_body_is_refused(world: World) -> None:
    creds = world.credentials("fx-1")
    with mtls(world, creds) as http:
        record = rec("SN00000001")
        first = http.post("/api/v1/test-records", json=record, headers={"Idempotency-Key": KEY})
        # The same JSON value, however spaced or ordered, and the key as a structured-field string.
        respaced = json.dumps(dict(reversed(record.items())), indent=2)
        headers = {"Idempotency-Key": f'"{KEY}"', "Content-Type": "application/json"}
        again = http.post("/api/v1/test-records", content=respaced, headers=headers)
        other = http.post("/api/v1/test-records", json=rec("SN00000002"), headers={"Idempotency-Key": KEY})
        elsewhere = http.post(
            "/api/v1/test-records/batch", json={"records": [rec("SN00000001")]}, headers={"Idempotency-Key": KEY}
        )
        unkeyed = [http.post("/api/v1/test-records", json=rec("SN00000003")) for _ in range(2)]
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    for refused in (other, elsewhere):
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "idempotency_key_reused"
    # Without the header a resend is a new request, as before.
    assert [r.status_code for r in unkeyed] == [201, 201] and unkeyed[0].json() != unkeyed[1].json()
    assert stored_records(world) == 3 and counts(world, "test.recorded") == 3


@pytest.mark.parametrize("key", ["", '""', "x" * 256, b"cl\xc3\xa9", "a\tb"], ids=repr)
def test_a_malformed_key_is_refused_and_stores_nothing(world: World, key: str | bytes) -> None:
    with mtls(world, world.credentials("fx-1")) as http:
        response = http.post("/api/v1/test-records", json=rec("SN00000001"), headers={"Idempotency-Key": key})
    assert response.status_code == 400 and response.json()["error"]["code"] == "idempotency_key_invalid"
    assert stored_records(world) == 0 and counts(world, "test.recorded") == 0


def test_a_keyed_refusal_is_replayed_recorded_once_and_consumes_nothing(any_world: World) -> None:
    creds = any_world.credentials("fx-1")
    order = any_world.order(quota=1)
    device = SimulatedDevice("SN00000001")
    body = {"order_id": order, "serial": device.serial, "csr": device.csr_pem()}
    with mtls(any_world, creds) as http:
        answers = [http.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": KEY}) for _ in range(3)]
        http.post("/api/v1/test-records", json=rec(device.serial))
        still = http.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": KEY})
        fresh = http.post("/api/v1/units/provision", json=body, headers={"Idempotency-Key": "another-key"})
        bad = {"order_id": order, "serial": "SN00000002", "csr": "not a CSR"}
        unparsed = [http.post("/api/v1/units/provision", json=bad, headers={"Idempotency-Key": "k3"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [409, 409, 409]
    assert answers[0].json()["error"]["code"] == "test_missing"
    assert all(a.json() == answers[0].json() for a in answers)
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    # The draft: the answer, whatever it was, is replayed; a new attempt is a new key.
    assert still.status_code == 409 and still.headers["Idempotent-Replayed"] == "true"
    assert fresh.status_code == 201
    assert [u.json()["error"]["code"] for u in unparsed] == ["csr_invalid", "csr_invalid"]
    refusals = Counter(e["code"] for e in list_events(any_world.inst, kind="unit.refused"))
    assert refusals == Counter({"test_missing": 1, "csr_invalid": 1})
    assert used(any_world, order) == 1


def at_once(n: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    out: list[httpx.Response | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in out if r is not None]


def test_one_key_sent_by_four_threads_at_once_does_the_work_once(any_world: World) -> None:
    creds = any_world.credentials("fx-1")
    order = any_world.order(quota=10)
    devices = [SimulatedDevice(f"SN0000000{i}") for i in range(1, 4)]
    units = {"order_id": order, "units": [{"serial": d.serial, "csr": d.csr_pem()} for d in devices]}
    with mtls(any_world, creds) as http:
        records = {"records": [rec(d.serial) for d in devices]}
        uploads = at_once(
            4, lambda: http.post("/api/v1/test-records/batch", json=records, headers={"Idempotency-Key": "t"})
        )
        single = {"order_id": order, "serial": devices[0].serial, "csr": devices[0].csr_pem()}
        singles = at_once(
            4, lambda: http.post("/api/v1/units/provision", json=single, headers={"Idempotency-Key": "p"})
        )
        batches = at_once(
            3, lambda: http.post("/api/v1/units/provision-batch", json=units, headers={"Idempotency-Key": "b"})
        )
        after = http.post("/api/v1/units/provision-batch", json=units, headers={"Idempotency-Key": "b"})
    # Single transactions: the rivals wait for the first one's commit and replay its answer.
    for answers, status in ((uploads, 200), (singles, 201)):
        assert [a.status_code for a in answers] == [status] * 4
        assert len({a.text for a in answers}) == 1
        assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true", "true", "true"]
    # A batch of units runs a transaction per unit: a rival meanwhile is told it is in progress.
    fresh = [b for b in batches if b.status_code == 200 and "Idempotent-Replayed" not in b.headers]
    assert len(fresh) == 1
    for b in batches:
        if b is not fresh[0]:
            assert (b.status_code == 409 and b.json()["error"]["code"] == "idempotency_key_in_progress") or (
                b.status_code == 200 and b.json() == fresh[0].json()
            )
    assert after.json() == fresh[0].json() and after.headers["Idempotent-Replayed"] == "true"
    assert [r["status"] for r in fresh[0].json()["results"]] == ["issued"] * 3
    assert stored_records(any_world) == 3 and counts(any_world, "test.recorded") == 3
    assert counts(any_world, "unit.provisioned") == 3 and counts(any_world, "unit.refused") == 0
    assert used(any_world, order) == 3


def test_keys_expire_after_the_retention_period_and_maintenance_forgets_them(world: World) -> None:
    creds = world.credentials("fx-1")
    with mtls(world, creds) as http:
        http.post("/api/v1/test-records", json=rec("SN00000001"), headers={"Idempotency-Key": KEY})
        http.post("/api/v1/test-records", json=rec("SN00000002"), headers={"Idempotency-Key": str(uuid.uuid4())})
        real = world.inst.clock
        world.inst.clock = lambda: real() + timedelta(hours=world.inst.limits.idempotency_key_hours, minutes=1)
        try:
            # A key past its retention is a new key (even before maintenance came by)...
            again = http.post("/api/v1/test-records", json=rec("SN00000001"), headers={"Idempotency-Key": KEY})
            maintenance.run_round(world.inst)
        finally:
            world.inst.clock = real
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert stored_records(world) == 3
    with world.inst.db.read() as s:
        keys = list(s.execute(select(IdempotencyKeyRow.key)).scalars())
    assert keys == [KEY]  # ...and maintenance forgot the other one, kept the one just taken
    assert idempotency.forget_expired(world.inst) == 0


def test_openapi_documents_the_header_on_the_four_writes(world: World) -> None:
    # The first call builds the document (seconds on a loaded machine: httpx waits 5 s by default).
    spec = httpx.get(f"{world.url}/openapi.json", verify=tls_context(world.credentials("fx-1")), timeout=60).json()
    for path in (
        "/api/v1/test-records",
        "/api/v1/test-records/batch",
        "/api/v1/units/provision",
        "/api/v1/units/provision-batch",
    ):
        [header] = [p for p in spec["paths"][path]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and not header.get("required")
        assert "idempotency_key_reused" in header["description"]


def test_a_batch_whose_process_died_is_in_progress_then_taken_over_and_done_once(world: World) -> None:
    creds = world.credentials("fx-1")
    order = world.order(quota=5)
    device = SimulatedDevice("SN00000001")
    body = {"order_id": order, "units": [{"serial": device.serial, "csr": device.csr_pem()}]}
    operation = "POST /api/v1/units/provision-batch"
    # A process took the key, then died before answering.
    assert (
        idempotency.begin_batch(world.inst, idempotency.Keyed.of("fx-1", IdempotencyKey(KEY), operation, body)) is None
    )
    with mtls(world, creds) as http:
        http.post("/api/v1/test-records", json=rec(device.serial))
        waiting = http.post("/api/v1/units/provision-batch", json=body, headers={"Idempotency-Key": KEY})
        real = world.inst.clock
        world.inst.clock = lambda: real() + idempotency.STALE_AFTER + timedelta(seconds=1)
        try:
            taken = http.post("/api/v1/units/provision-batch", json=body, headers={"Idempotency-Key": KEY})
            again = http.post("/api/v1/units/provision-batch", json=body, headers={"Idempotency-Key": KEY})
        finally:
            world.inst.clock = real
    assert waiting.status_code == 409 and waiting.json()["error"]["code"] == "idempotency_key_in_progress"
    assert taken.status_code == 200 and taken.json()["results"][0]["status"] == "issued"
    assert again.json() == taken.json() and again.headers["Idempotent-Replayed"] == "true"
    assert counts(world, "unit.provisioned") == 1 and used(world, order) == 1
