"""Alerts to webhooks: a real HTTP receiver on loopback, signed bodies, retries, the ledger as memory."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fabguard.domain.errors import ConfigurationError
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.runtime.workers import WebhookSender
from fabguard.service.analytics import dashboard_queries, webhooks
from fabguard.service.analytics.webhooks import DeliveryPolicy, delivery_lease, load_webhooks, send_round
from fabguard.service.core.instance import Instance, utcnow
from fabguard.store import worker_leases
from tests.support import World, tested_device

SECRET = "receiver-secret-0123456789"
FAST = DeliveryPolicy(max_attempts=3, backoff=0.01)


@dataclass
class Receiver:
    """An HTTP server that answers with the scripted statuses (then 200) and keeps what it received."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds before each answer, so that senders' rounds overlap
    server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self, status: int = 200) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b, s in self.received if s == status]

    def deliveries(self) -> Counter[tuple[str, str]]:
        """How often each (path, alert id) was answered 200."""
        return Counter(
            (p, h["X-FabGuard-Alert"]) for p, (h, _, s) in zip(self.paths, self.received, strict=True) if s == 200
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay)
            with lock:
                status = state.statuses.pop(0) if state.statuses else 200
                state.received.append((dict(self.headers), body, status))
                state.paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


def configure(world: World, *hooks: dict[str, object]) -> None:
    (world.inst.home / "webhooks.json").write_text(json.dumps(list(hooks)))


def over_quota(world: World) -> None:
    """An order of one unit and a second attempt: one open quota_overrun alert."""
    order = world.order(1, order_id="po-hook")
    client = world.fixture("f1")
    for seed, serial in enumerate(("SN1", "SN2")):
        device = tested_device(client, serial, seed=seed)
        with contextlib.suppress(FabGuardClientError):  # the second is refused: that is the point
            client.provision(order, serial, device.csr_pem())


def untested(world: World, client: FixtureClient, order_id: str) -> None:
    """A unit offered without a test record on a new order: one open untested_unit alert for that order."""
    order = world.order(5, order_id=order_id)
    serial = f"SN-{order_id}"
    with contextlib.suppress(FabGuardClientError):  # refused: that is the point
        client.provision(order, serial, SimulatedDevice(serial).csr_pem())


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def lease_holder(inst: Instance) -> str | None:
    with inst.db.read() as s:
        return worker_leases.holder_of(s, webhooks.LEASE, now=inst.clock())


def events(world: World, kind: str) -> list[dict[str, Any]]:
    with world.admin() as admin:
        return list(admin.get("/api/v1/events", params={"kind": kind}).json())


def test_a_new_alert_is_posted_once_signed_and_recorded(world: World, receiver: Receiver) -> None:
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    assert send_round(world.inst, policy=FAST) == 1
    assert send_round(world.inst, policy=FAST) == 0  # already delivered: the ledger remembers
    ((headers, body, _),) = receiver.received
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-FabGuard-Signature"], f"sha256={expected}")
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["alert"]["kind"] == "quota_overrun" and sent["alert"]["order_id"] == "po-hook"
    assert sent["organization"] == "Acme Devices" and headers["X-FabGuard-Alert"] == sent["alert"]["id"]
    (delivered,) = events(world, "alert.delivered")
    assert delivered["detail"]["alert_id"] == sent["alert"]["id"]
    assert delivered["detail"]["webhook"] == "soc" and delivered["detail"]["attempt"] == 1
    assert receiver.url not in json.dumps(delivered)  # URLs may carry tokens; the ledger names the webhook


def test_a_tampered_body_fails_signature_verification(world: World, receiver: Receiver) -> None:
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    send_round(world.inst, policy=FAST)
    ((headers, body, _),) = receiver.received
    tampered = body.replace(b"po-hook", b"po-evil")
    assert headers["X-FabGuard-Signature"] != webhooks.signature(SECRET, tampered)
    assert headers["X-FabGuard-Signature"] != webhooks.signature("another-secret-0123456789", body)


def test_a_failing_receiver_is_retried_with_backoff_and_each_attempt_recorded(world: World, receiver: Receiver) -> None:
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    receiver.statuses = [500, 503]
    waits: list[float] = []
    assert send_round(world.inst, policy=FAST, sleep=lambda s: waits.append(s) is not None) == 1
    assert [s for _, _, s in receiver.received] == [500, 503, 200]
    assert waits == [0.01, 0.02]
    failed = sorted(events(world, "alert.delivery_failed"), key=lambda e: e["seq"])
    assert [(e["detail"]["attempt"], e["detail"]["error"], e["detail"]["gave_up"]) for e in failed] == [
        (1, "HTTP 500", False),
        (2, "HTTP 503", False),
    ]
    assert events(world, "alert.delivered")[0]["detail"]["attempt"] == 3
    # Each attempt was signed afresh and the receiver verifies every one.
    assert all(h["X-FabGuard-Signature"] == webhooks.signature(SECRET, b) for h, b, _ in receiver.received)


def test_attempts_are_bounded_and_a_dead_receiver_is_left_alone_for_a_while(world: World, receiver: Receiver) -> None:
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    receiver.statuses = [500] * 10
    assert send_round(world.inst, policy=FAST) == 0
    assert len(receiver.received) == 3
    assert [e["detail"]["gave_up"] for e in sorted(events(world, "alert.delivery_failed"), key=lambda e: e["seq"])][-1]
    assert send_round(world.inst, policy=FAST) == 0 and len(receiver.received) == 3  # cooling off
    assert send_round(world.inst, policy=DeliveryPolicy(max_attempts=3, backoff=0.01, give_up_seconds=0)) == 0
    assert len(receiver.received) == 6


def test_an_unreachable_url_is_a_recorded_failure_not_a_crash(world: World, receiver: Receiver) -> None:
    port = receiver.server.server_address[1]
    receiver.server.shutdown()
    receiver.server.server_close()
    configure(world, {"name": "gone", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET})
    over_quota(world)
    assert send_round(world.inst, policy=DeliveryPolicy(max_attempts=2, backoff=0.01)) == 0
    assert {e["detail"]["error"].split(":")[0] for e in events(world, "alert.delivery_failed")} == {"ConnectError"}


def test_severity_filter_and_acknowledged_alerts_are_not_sent(world: World, receiver: Receiver) -> None:
    configure(
        world,
        {"name": "pager", "url": receiver.url, "secret": SECRET, "min_severity": "critical"},
        {"name": "soc", "url": receiver.url + "?b", "secret": SECRET},
    )
    over_quota(world)
    (alert,) = dashboard_queries.alerts(world.inst)
    dashboard_queries.acknowledge(world.inst, alert.id, actor="alice")
    assert send_round(world.inst, policy=FAST) == 0 and receiver.received == []


def test_the_sender_thread_delivers_and_stops(world: World, receiver: Receiver) -> None:
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    sender = WebhookSender(world.inst, interval=0.05, policy=FAST).start()
    try:
        for _ in range(200):
            if receiver.received:
                break
            threading.Event().wait(0.05)
    finally:
        sender.stop()
    assert len(receiver.bodies()) == 1


def test_senders_of_two_processes_racing_deliver_every_alert_exactly_once(any_world: World, receiver: Receiver) -> None:
    world = any_world
    configure(
        world,
        {"name": "soc", "url": receiver.url, "secret": SECRET},
        {"name": "pager", "url": receiver.url + "?pager", "secret": SECRET},
    )
    over_quota(world)
    client = world.fixture("f2")
    for n in range(3):
        untested(world, client, f"po-{n}")
    alerts = {a.id for a in dashboard_queries.alerts(world.inst)}
    assert len(alerts) == 4
    receiver.delay = 0.05
    other = Instance.open(world.inst.home)  # a second process: its own engine on the same database
    senders = 4
    start = threading.Barrier(senders)
    delivered: list[int] = []
    errors: list[BaseException] = []

    expected = {(path, a) for path in ("/hook", "/hook?pager") for a in alerts}
    deadline = time.monotonic() + 90

    def sender(inst: Instance) -> None:
        # Rounds until every alert is out, as a server's senders run them (every few seconds, for ever): how
        # many rounds that takes depends on the machine's load (a holder whose lease lapses stops, and the
        # others take over at their next round), what is delivered must not.
        try:
            lease = delivery_lease(inst, FAST)
            start.wait()
            while sum(delivered) < len(expected) and time.monotonic() < deadline:
                delivered.append(send_round(inst, policy=FAST, lease=lease))
                time.sleep(0.02)
            lease.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(inst,)) for inst in (world.inst, other) * (senders // 2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        other.close()
    assert not errors, errors
    assert receiver.deliveries() == Counter(expected)  # each alert once to each webhook, none twice
    assert sum(delivered) == len(expected) == len(events(world, "alert.delivered"))


def test_when_the_sending_process_stops_another_takes_over_at_its_next_round(
    any_world: World, receiver: Receiver
) -> None:
    world = any_world
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    client = world.fixture("f2")
    other = Instance.open(world.inst.home)
    first = WebhookSender(world.inst, interval=0.02, policy=FAST).start()
    second = WebhookSender(other, interval=0.02, policy=FAST)
    try:
        untested(world, client, "po-1")
        wait_for(lambda: len(receiver.received) == 1)
        assert lease_holder(world.inst) == first.lease.holder
        second.start()
        untested(world, client, "po-2")
        wait_for(lambda: len(receiver.received) == 2)
        assert lease_holder(other) == first.lease.holder  # the second sender has sent nothing
        first.stop()
        assert lease_holder(other) in (None, second.lease.holder)  # released, not left to expire
        stopped = time.monotonic()
        untested(world, client, "po-3")
        wait_for(lambda: len(receiver.received) == 3)
        assert time.monotonic() - stopped < FAST.lease_seconds / 2
        assert lease_holder(other) == second.lease.holder
    finally:
        first.stop()
        second.stop()
        other.close()
    assert sorted(receiver.deliveries().values()) == [1, 1, 1]
    assert lease_holder(world.inst) is None  # stop() released it


def test_a_crashed_senders_lease_blocks_sending_until_it_expires_then_is_taken_over(
    any_world: World, receiver: Receiver
) -> None:
    world = any_world
    configure(world, {"name": "soc", "url": receiver.url, "secret": SECRET})
    over_quota(world)
    ttl = timedelta(seconds=FAST.lease_seconds)
    with world.inst.db.transaction() as s:  # a sender that took the lease and died
        assert worker_leases.acquire(s, webhooks.LEASE, "crashed-host/4242/dead", now=world.inst.clock(), ttl=ttl)
    assert send_round(world.inst, policy=FAST) == 0
    assert receiver.received == [] and events(world, "alert.delivered") == []
    later = Instance.open(world.inst.home, clock=lambda: utcnow() + ttl)  # a process once the lease expired
    try:
        sender = WebhookSender(later, interval=0.02, policy=FAST).start()
        try:
            wait_for(lambda: len(receiver.received) == 1)
            assert lease_holder(later) == sender.lease.holder
        finally:
            sender.stop()
    finally:
        later.close()
    assert len(receiver.bodies()) == 1 and len(events(world, "alert.delivered")) == 1


def test_a_lease_shorter_than_one_attempt_needs_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        DeliveryPolicy(timeout=30.0, lease_seconds=60.0)


@pytest.mark.parametrize(
    "hooks",
    [
        {"name": "x", "url": "ftp://h/x", "secret": SECRET},
        {"name": "x", "url": "https://h/x", "secret": "short"},
        {"name": "x", "url": "https://h/x", "secret": SECRET, "min_severity": "loud"},
        {"url": "https://h/x", "secret": SECRET},
    ],
)
def test_a_bad_webhook_file_is_refused(world: World, hooks: dict[str, object]) -> None:
    configure(world, hooks)
    with pytest.raises(ConfigurationError):
        load_webhooks(world.inst)


def test_no_file_means_no_webhooks(world: World) -> None:
    assert load_webhooks(world.inst) == [] and send_round(world.inst) == 0
