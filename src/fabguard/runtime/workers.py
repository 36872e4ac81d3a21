"""A server's background workers, started and stopped together: the process's liveness lease
(``runtime.liveness``), the analytics projector, the webhook sender and the maintenance schedule, each
on its own daemon thread.

What each round does is a service (``projection.advance``, ``webhooks.send_round``,
``maintenance.run_round``); here are only the threads that repeat them and the leases that keep the
processes sharing one database from doing the same work twice.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from fabguard.runtime.liveness import ProcessLiveness
from fabguard.service.analytics import dashboard_queries, projection, webhooks
from fabguard.service.core.instance import Instance
from fabguard.service.operations import maintenance
from fabguard.store import worker_leases

# Each worker logs under the name its service has always used.
_projector_log = logging.getLogger("fabguard.analytics")
_sender_log = logging.getLogger("fabguard.webhooks")
_maintenance_log = logging.getLogger("fabguard.maintenance")

PROJECTOR_LEASE = "projector"


class Projector:
    """Keeps the analytics projection caught up on a daemon thread: reads then find nothing left to do.

    Every server process runs one, but only the holder of the ``projector`` lease folds: with several
    processes on one PostgreSQL database they would otherwise each read and fold every batch, and all
    but one would drop its work at the cursor check (correct, but that work is the costliest thing the
    server does). The lease is claimed or renewed every third of ``lease_seconds``; when its holder dies
    another process takes over within ``lease_seconds`` plus a third, and meanwhile every read still
    catches the projection up itself (``analytics.refresh``). The lease is judged by wall-clock time,
    not by the instance's clock. A failed round is logged and retried.
    """

    def __init__(self, inst: Instance, interval: float = 0.25, *, lease_seconds: float = 30.0) -> None:
        self.inst = inst
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.hold = worker_leases.Hold(
            inst.db, PROJECTOR_LEASE, ttl=timedelta(seconds=lease_seconds), clock=lambda: datetime.now(UTC)
        )
        self.folded = 0  # events this projector has folded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabguard-projector", daemon=True)

    def start(self) -> Projector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _claim(self) -> bool:
        return self.hold.renew(timedelta(0)) or self.hold.take()

    def _run(self) -> None:
        next_claim = 0.0
        try:
            while not self._stop.wait(self.interval):
                try:
                    if time.monotonic() >= next_claim:
                        self._claim()
                        next_claim = time.monotonic() + self.lease_seconds / 3
                    if self.hold.held:
                        settings = dashboard_queries.load_settings(self.inst)
                        done = projection.advance(self.inst, settings, max_events=dashboard_queries.READ_CATCH_UP)
                        self.folded += done.events
                except Exception:
                    _projector_log.exception("analytics projection round failed")
        finally:
            try:
                self.hold.release()  # a stopping server hands the work over at once
            except Exception:
                _projector_log.exception("could not release the projector lease")


class WebhookSender:
    """Runs ``webhooks.send_round`` every ``interval`` seconds on a daemon thread, sending while it holds the lease.

    Every server process may run one: of the senders sharing a database, only the holder of the
    ``webhooks`` lease sends, keeping it from round to round; the others' rounds send nothing until
    it is released or expires. ``stop`` cuts a backoff short, lets an attempt in flight finish and be
    recorded, then releases the lease, so another process's sender takes over at its next round.
    """

    def __init__(
        self,
        inst: Instance,
        interval: float = 5.0,
        policy: webhooks.DeliveryPolicy | None = None,
        *,
        holder: str | None = None,
    ) -> None:
        self.inst = inst
        self.interval = interval
        self.policy = policy or webhooks.DeliveryPolicy()
        self._stop = threading.Event()
        self.lease = webhooks.delivery_lease(inst, self.policy, holder)
        self._thread = threading.Thread(target=self._run, name="fabguard-webhooks", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.policy.timeout + 5)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=self.policy.timeout, follow_redirects=False) as client:
                while not self._stop.wait(self.interval):
                    try:
                        webhooks.send_round(
                            self.inst, policy=self.policy, client=client, lease=self.lease, stop=self._stop
                        )
                    except Exception:  # a failed round is logged and retried at the next interval
                        _sender_log.exception("webhook delivery round failed")
        finally:
            # Here, not in stop(): only once the last attempt is recorded may another sender take over.
            try:
                self.lease.release()
            except Exception:
                _sender_log.exception("could not release the webhook delivery lease; it expires by itself")


class MaintenanceSchedule:
    """Runs ``maintenance.run_round`` every ``interval`` seconds on a daemon thread (several processes may each run one)."""

    def __init__(self, inst: Instance, interval: float) -> None:
        self.inst = inst
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fabguard-maintenance", daemon=True)

    def start(self) -> MaintenanceSchedule:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                maintenance.run_round(self.inst)
            except Exception:  # a failed round is logged and retried at the next interval
                _maintenance_log.exception("scheduled maintenance failed")


class BackgroundWorkers:
    """A server process's workers, with one life cycle: ``start`` them all, ``stop`` them all.

    The liveness lease is renewed every second (started first, given up last); the maintenance schedule
    runs every ``inst.limits.checkpoint_seconds``; the projector keeps rollups and alerts following the
    event log; the sender pushes alerts to the configured webhooks (``<home>/webhooks.json``). ``stop``
    returns once each thread has ended (or its join timed out), the liveness, projector and webhook
    leases released for another process to take at once.
    """

    def __init__(self, inst: Instance) -> None:
        self.liveness = ProcessLiveness(inst)
        self.maintenance = MaintenanceSchedule(inst, inst.limits.checkpoint_seconds)
        self.projector = Projector(inst)
        self.sender = WebhookSender(inst)

    def start(self) -> BackgroundWorkers:
        self.liveness.start()
        self.maintenance.start()
        self.projector.start()
        self.sender.start()
        return self

    def stop(self) -> None:
        try:
            self.maintenance.stop()
            self.sender.stop()
        finally:
            try:
                self.projector.stop()
            finally:
                self.liveness.stop()
