"""A server's background workers, started and stopped together: the process's liveness lease
(``runtime.liveness``), the analytics projector, the webhook sender and the maintenance schedule, each
on its own daemon thread.

What each round does is a service (``projection.advance``, ``webhooks.send_round``,
``maintenance.run_round``); here are only the threads that repeat them (each a ``PeriodicWorker``,
``runtime.periodic``) and the leases that keep the processes sharing one database from doing the same
work twice. Each worker logs under the name its service has always used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx

from fabguard.runtime.liveness import ProcessLiveness
from fabguard.runtime.periodic import PeriodicWorker
from fabguard.service.analytics import dashboard_queries, projection, webhooks
from fabguard.service.core.instance import Instance
from fabguard.service.operations import maintenance
from fabguard.store import worker_leases

PROJECTOR_LEASE = "projector"


class Projector(PeriodicWorker):
    """Keeps the analytics projection caught up on a daemon thread: reads then find nothing left to do.

    Every server process runs one, but only the holder of the ``projector`` lease folds: with several
    processes on one PostgreSQL database they would otherwise each read and fold every batch, and all
    but one would drop its work at the cursor check (correct, but that work is the costliest thing the
    server does). The lease is claimed or renewed every third of ``lease_seconds``; when its holder dies
    another process takes over within ``lease_seconds`` plus a third, and meanwhile every read still
    catches the projection up itself (``analytics.refresh``). The lease is judged by wall-clock time,
    not by the instance's clock. A failed round is logged and retried.
    """

    thread_name = "fabguard-projector"
    log = logging.getLogger("fabguard.analytics")
    round_failed = "analytics projection round failed"
    release_failed = "could not release the projector lease"
    lease: worker_leases.Hold

    def __init__(
        self, inst: Instance, interval: float = 0.25, *, lease_seconds: float = 30.0, busy_interval: float = 1.0
    ) -> None:
        hold = worker_leases.Hold(
            inst.db, PROJECTOR_LEASE, ttl=timedelta(seconds=lease_seconds), clock=lambda: datetime.now(UTC)
        )
        super().__init__(inst, interval, lease=hold)  # released as the thread ends: the work is handed over at once
        self.lease_seconds = lease_seconds
        self.busy_interval = max(busy_interval, interval)
        self.folded = 0  # events this projector has folded
        self.last_round = 0  # events the last round folded
        self._next_claim = 0.0

    def join_seconds(self) -> float:
        return 30.0

    def wait_seconds(self) -> float:
        """``interval`` after a round that found nothing (the first events are folded within a quarter of
        a second); ``busy_interval`` after one that folded some, so that while a line keeps adding events
        a round's fixed cost (its reads, a dozen writes, the detectors' state) is paid once a second
        rather than four times; none after a full round (more are waiting: a backlog is folded at once).
        Reads never wait for the projector: each folds what is pending first (``analytics.refresh``)."""
        if self.last_round >= dashboard_queries.READ_CATCH_UP:
            return 0.0
        return self.busy_interval if self.last_round else self.interval

    def run_round(self) -> None:
        self.last_round = 0
        if time.monotonic() >= self._next_claim:
            self._claim()
            self._next_claim = time.monotonic() + self.lease_seconds / 3
        if self.lease.held:
            settings = dashboard_queries.load_settings(self.inst)
            done = projection.advance(self.inst, settings, max_events=dashboard_queries.READ_CATCH_UP)
            self.folded += done.events
            self.last_round = done.events

    def _claim(self) -> bool:
        return self.lease.renew(timedelta(0)) or self.lease.take()


class WebhookSender(PeriodicWorker):
    """Runs ``webhooks.send_round`` every ``interval`` seconds on a daemon thread, sending while it holds the lease.

    Every server process may run one: of the senders sharing a database, only the holder of the
    ``webhooks`` lease sends, keeping it from round to round; the others' rounds send nothing until
    it is released or expires. ``stop`` cuts a backoff short, lets an attempt in flight finish and be
    recorded, then releases the lease (as the thread ends, not in ``stop``: only once the last attempt
    is recorded may another sender take over), so another process's sender takes over at its next round.
    """

    thread_name = "fabguard-webhooks"
    log = logging.getLogger("fabguard.webhooks")
    round_failed = "webhook delivery round failed"
    release_failed = "could not release the webhook delivery lease; it expires by itself"
    lease: worker_leases.Hold

    def __init__(
        self,
        inst: Instance,
        interval: float = 5.0,
        policy: webhooks.DeliveryPolicy | None = None,
        *,
        holder: str | None = None,
    ) -> None:
        self.policy = policy or webhooks.DeliveryPolicy()
        super().__init__(inst, interval, lease=webhooks.delivery_lease(inst, self.policy, holder))
        self._client: httpx.Client | None = None

    def join_seconds(self) -> float:
        return self.policy.timeout + 5

    @contextmanager
    def rounds(self) -> Iterator[None]:
        """One HTTP client for every round of the thread."""
        with httpx.Client(timeout=self.policy.timeout, follow_redirects=False) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    def run_round(self) -> None:
        assert self._client is not None  # rounds run inside ``rounds``
        webhooks.send_round(self.inst, policy=self.policy, client=self._client, lease=self.lease, stop=self._stop)


class MaintenanceSchedule(PeriodicWorker):
    """Runs ``maintenance.run_round`` every ``interval`` seconds on a daemon thread (several processes may each run one)."""

    thread_name = "fabguard-maintenance"
    log = logging.getLogger("fabguard.maintenance")
    round_failed = "scheduled maintenance failed"

    def run_round(self) -> None:
        maintenance.run_round(self.inst)


class BackgroundWorkers:
    """A server process's workers, with one life cycle: ``start`` them all, ``stop`` them all.

    The liveness lease is renewed every second (started first, given up last); the maintenance schedule
    runs every ``inst.limits.checkpoint_seconds``; the projector keeps rollups and alerts following the
    event log; the sender pushes alerts to the configured webhooks (``<home>/webhooks.json``). ``stop``
    returns once each thread has ended (or its join timed out), the liveness, projector and webhook
    leases released for another process to take at once. ``others`` (a worker process's metrics sampler,
    ``api.multiprocess_metrics``) start after these and stop before them.
    """

    def __init__(self, inst: Instance, *others: PeriodicWorker) -> None:
        self.liveness = ProcessLiveness(inst)
        self.maintenance = MaintenanceSchedule(inst, inst.limits.checkpoint_seconds)
        self.projector = Projector(inst)
        self.sender = WebhookSender(inst)
        self.others = others

    def start(self) -> BackgroundWorkers:
        self.liveness.start()
        self.maintenance.start()
        self.projector.start()
        self.sender.start()
        for other in self.others:
            other.start()
        return self

    def stop(self) -> None:
        try:
            for other in self.others:
                other.stop()
            self.maintenance.stop()
            self.sender.stop()
        finally:
            try:
                self.projector.stop()
            finally:
                self.liveness.stop()
