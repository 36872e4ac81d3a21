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

The receiver checks ``X-FabGuard-Signature: sha256=<hex>``, an HMAC-SHA256 of the raw body under the
webhook's secret (compare in constant time), and may reject an old ``sent_at`` to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from fabguard.analytics import Alert, Severity
from fabguard.domain.errors import ConfigurationError
from fabguard.service import analytics
from fabguard.service.instance import Instance
from fabguard.store.db import append_event
from fabguard.store.models import Event

log = logging.getLogger("fabguard.webhooks")

CONFIG_FILE = "webhooks.json"
DELIVERED = "alert.delivered"
FAILED = "alert.delivery_failed"
SIGNATURE_HEADER = "X-FabGuard-Signature"
MIN_SECRET = 16


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

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


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
) -> bool:
    """POST one alert, retrying with backoff; every attempt is an event. ``sleep`` returns True to stop early."""
    for attempt in range(1, policy.max_attempts + 1):
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
    open_alerts = sorted((a for a in analytics.alerts(inst) if not a.acknowledged), key=lambda a: (a.first_at, a.id))
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


def send_once(
    inst: Instance,
    *,
    policy: DeliveryPolicy | None = None,
    sleep: Callable[[float], bool] | None = None,
    client: httpx.Client | None = None,
) -> int:
    """One round: every due alert to every webhook. Returns how many were delivered."""
    policy = policy or DeliveryPolicy()
    hooks = load_webhooks(inst)
    if not hooks:
        return 0
    stop = threading.Event()
    own = client is None
    http = client or httpx.Client(timeout=policy.timeout, follow_redirects=False)
    try:
        return sum(
            deliver(inst, hook, alert, client=http, policy=policy, sleep=sleep or stop.wait)
            for hook, alert in pending(inst, hooks, policy)
        )
    finally:
        if own:
            http.close()


class WebhookSender:
    """Runs ``send_once`` every ``interval`` seconds on a daemon thread; ``stop`` cuts a backoff short.

    Run one per deployment: two processes each running one could both send an alert before either
    has recorded the delivery.
    """

    def __init__(self, inst: Instance, interval: float = 5.0, policy: DeliveryPolicy | None = None) -> None:
        self.inst = inst
        self.interval = interval
        self.policy = policy or DeliveryPolicy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabguard-webhooks", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.policy.timeout + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.policy.timeout, follow_redirects=False) as client:
            while not self._stop.wait(self.interval):
                try:
                    send_once(self.inst, policy=self.policy, sleep=self._stop.wait, client=client)
                except Exception:  # a failed round is logged and retried at the next interval
                    log.exception("webhook delivery round failed")
