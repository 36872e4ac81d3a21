"""Alerts pushed to webhooks: signed JSON POSTs, retried with backoff, every attempt in the ledger.

Configuration is ``<home>/webhooks.json`` (read every round, so edits need no restart)::

    [{"name": "soc", "url": "https://hooks.example.com/fabguard", "secret": "at least 16 characters",
      "min_severity": "warning"}]

``name`` identifies the webhook in the ledger (the URL is never recorded: many carry a token in their
path); ``min_severity`` (info, warning, high, critical; default info) filters what it receives.

Each open alert goes to each webhook once. A delivery is an ``alert.delivered`` event, a failed
attempt an ``alert.delivery_failed`` event, so what was sent where is in the ledger, and the ledger is
how the sender remembers: it never keeps state of its own. After ``max_attempts`` failed attempts in a
row the alert is left for ``give_up_seconds`` and then tried again.

Every server process runs a sender (``fabguard.runtime.workers.WebhookSender``), and with PostgreSQL
several processes share one database, so only the holder of the ``webhooks`` lease
(``fabguard.store.worker_leases``) sends. A round takes the lease (free, expired or already its own) before it
reads what is due, and renews it before every attempt; an attempt is made only when the renewal leaves
room for it (``DeliveryPolicy.attempt_seconds`` and ``LEASE_MARGIN``), so no other sender can take over
while a POST is in flight or before its outcome is recorded. A hold that lapsed in the middle of a
round ends the round: another sender may have delivered meanwhile, and the next round reads the ledger
afresh. A stopping sender releases the lease for another process to take at its next round; one that
dies leaves it to expire (``DeliveryPolicy.lease_seconds``). The lease is operational, not a decision:
it is logged, never recorded in the ledger.

The receiver checks ``X-FabGuard-Signature: sha256=<hex>``, an HMAC-SHA256 of the raw body under the
webhook's secret (compare in constant time), and may reject an old ``sent_at`` to stop replays. The
lease rests on time (a receiver trickling its answer for longer than the margin allows, or host clocks
far apart, could let a second sender repeat an alert), so a receiver that must never act twice keeps
the ``X-FabGuard-Alert`` ids it has seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from fabguard.analytics import Alert, Severity
from fabguard.domain.errors import ConfigurationError
from fabguard.service.analytics import dashboard_queries
from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases
from fabguard.store.eventlog import append_event
from fabguard.store.models import Event

CONFIG_FILE = "webhooks.json"
DELIVERED = "alert.delivered"
FAILED = "alert.delivery_failed"
SIGNATURE_HEADER = "X-FabGuard-Signature"
MIN_SECRET = 16
LEASE = "webhooks"
# Room left after an attempt's worst case, for recording its outcome and for clock differences between hosts.
LEASE_MARGIN = 10.0


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: str
    min_severity: Severity = Severity.INFO


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the sender tries: ``max_attempts`` per round, ``backoff`` doubling between them."""

    max_attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 10.0
    give_up_seconds: float = 900.0
    # At most this many deliveries per webhook per round, so a backlog cannot stall shutdown.
    per_round: int = 50
    # How long a renewal holds the delivery lease: a dead sender is taken over after at most this.
    lease_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.lease_seconds < self.attempt_seconds + LEASE_MARGIN:
            raise ConfigurationError(
                f"lease_seconds must be at least 3 x timeout + {LEASE_MARGIN:g} (the room one attempt needs)"
            )

    @property
    def attempt_seconds(self) -> float:
        """One POST's worst case, as httpx bounds it: connecting, sending and receiving each within ``timeout``."""
        return 3 * self.timeout

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


def delivery_lease(inst: Instance, policy: DeliveryPolicy, holder: str | None = None) -> worker_leases.Hold:
    """A sender's hold on the ``webhooks`` lease (``holder`` defaults to a fresh id: host, pid, random)."""
    return worker_leases.Hold(
        inst.db, LEASE, ttl=timedelta(seconds=policy.lease_seconds), clock=inst.clock, holder=holder
    )


def load_webhooks(inst: Instance) -> list[Webhook]:
    """The configured webhooks; none when the file does not exist. A broken file is an error."""
    path = inst.home / CONFIG_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ValueError("the file must hold a JSON list of webhooks")
        hooks = [_webhook(item) for item in data]
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    if len({h.name for h in hooks}) != len(hooks):
        raise ConfigurationError(f"{path}: webhook names must be unique")
    return hooks


def _webhook(item: object) -> Webhook:
    if not isinstance(item, dict):
        raise ValueError("each webhook must be an object with name, url and secret")
    name, url, secret = str(item["name"]), str(item["url"]), str(item["secret"])
    if not name or len(name) > 63 or not name.isprintable():
        raise ValueError("a webhook name is 1-63 printable characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"webhook {name}: the url must be http(s)://host/...")
    if len(secret) < MIN_SECRET:
        raise ValueError(f"webhook {name}: the secret must be at least {MIN_SECRET} characters")
    severity = str(item.get("min_severity", "info")).upper()
    if severity not in Severity.__members__:
        raise ValueError(f"webhook {name}: min_severity is one of info, warning, high, critical")
    return Webhook(name, url, secret, Severity[severity])


def signature(secret: str, body: bytes) -> str:
    """The header value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_for(alert: Alert, *, sent_at: datetime, organization: str) -> bytes:
    return json.dumps(
        {"type": "alert", "organization": organization, "sent_at": sent_at.isoformat(), "alert": alert.to_dict()},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


@dataclass(frozen=True)
class _History:
    delivered: frozenset[tuple[str, str]]
    # (webhook, alert) -> when it last gave up
    gave_up: dict[tuple[str, str], datetime]


def _history(inst: Instance) -> _History:
    delivered: set[tuple[str, str]] = set()
    gave_up: dict[tuple[str, str], datetime] = {}
    with inst.db.read() as s:
        rows = s.execute(select(Event.kind, Event.at, Event.detail).where(Event.kind.in_((DELIVERED, FAILED))))
        for kind, at, detail in rows:
            d = json.loads(detail)
            key = (str(d.get("webhook")), str(d.get("alert_id")))
            if kind == DELIVERED:
                delivered.add(key)
            elif d.get("gave_up"):
                gave_up[key] = max(at, gave_up.get(key, at))
    return _History(frozenset(delivered), gave_up)


def _record(inst: Instance, kind: str, hook: Webhook, alert: Alert, **detail: object) -> None:
    with inst.db.transaction() as s:
        append_event(
            s,
            kind,
            at=inst.clock(),
            actor="webhook-sender",
            order_id=alert.order_id,
            fixture_id=alert.fixture_id,
            detail={"alert_id": alert.id, "alert_kind": alert.kind, "webhook": hook.name, **detail},
        )


def deliver(
    inst: Instance,
    hook: Webhook,
    alert: Alert,
    *,
    client: httpx.Client,
    policy: DeliveryPolicy,
    sleep: Callable[[float], bool],
    may_send: Callable[[], bool] | None = None,
) -> bool:
    """POST one alert, retrying with backoff; every attempt is an event. ``sleep`` returns True to stop early.

    ``may_send`` is asked before each attempt (the sender renews its lease there); when it says no, the
    alert is left, unrecorded, for whoever sends next.
    """
    for attempt in range(1, policy.max_attempts + 1):
        if may_send is not None and not may_send():
            return False
        body = body_for(alert, sent_at=inst.clock(), organization=inst.config.organization)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(hook.secret, body),
            "X-FabGuard-Alert": alert.id,
            "User-Agent": "fabguard-webhook",
        }
        try:
            response = client.post(hook.url, content=body, headers=headers)
            outcome, ok = f"HTTP {response.status_code}", response.is_success
        except httpx.HTTPError as exc:
            outcome, ok = f"{type(exc).__name__}: {str(exc)[:200]}", False
        if ok:
            _record(inst, DELIVERED, hook, alert, attempt=attempt, status=outcome)
            return True
        last = attempt == policy.max_attempts
        _record(inst, FAILED, hook, alert, attempt=attempt, error=outcome, gave_up=last)
        if last or sleep(policy.delay(attempt)):
            return False
    return False


def pending(inst: Instance, hooks: Iterable[Webhook], policy: DeliveryPolicy) -> list[tuple[Webhook, Alert]]:
    """Open alerts each webhook has not received (and has not given up on lately), oldest first."""
    history = _history(inst)
    now = inst.clock()
    open_alerts = sorted(dashboard_queries.alerts(inst, open_only=True), key=lambda a: (a.first_at, a.id))
    out = []
    for hook in hooks:
        due = []
        for alert in open_alerts:
            key = (hook.name, alert.id)
            if alert.severity < hook.min_severity or key in history.delivered:
                continue
            gave_up = history.gave_up.get(key)
            if gave_up is not None and now - gave_up < timedelta(seconds=policy.give_up_seconds):
                continue
            due.append((hook, alert))
        out.extend(due[: policy.per_round])
    return out


def send_round(
    inst: Instance,
    *,
    policy: DeliveryPolicy | None = None,
    sleep: Callable[[float], bool] | None = None,
    client: httpx.Client | None = None,
    lease: worker_leases.Hold | None = None,
    stop: threading.Event | None = None,
) -> int:
    """One round: every due alert to every webhook, under the delivery lease. Returns how many were delivered.

    Sends nothing while another sender holds the lease. Without ``lease`` the round takes one of its
    own and releases it at the end. Once ``stop`` is set no new attempt starts and backoffs end.
    """
    policy = policy or DeliveryPolicy()
    hooks = load_webhooks(inst)
    if not hooks:
        return 0
    own_lease = lease is None
    lease = lease or delivery_lease(inst, policy)
    if not lease.take():
        return 0
    stop = stop or threading.Event()
    room = timedelta(seconds=policy.attempt_seconds + LEASE_MARGIN)

    def may_send() -> bool:
        return not stop.is_set() and lease.renew(room)

    own = client is None
    http = client or httpx.Client(timeout=policy.timeout, follow_redirects=False)
    try:
        delivered = 0
        # Read what is due only once the lease is held: the ledger then shows every delivery made so far.
        for hook, alert in pending(inst, hooks, policy):
            delivered += deliver(
                inst, hook, alert, client=http, policy=policy, sleep=sleep or stop.wait, may_send=may_send
            )
            if stop.is_set() or not lease.held:
                break
        return delivered
    finally:
        if own:
            http.close()
        if own_lease:
            lease.release()
