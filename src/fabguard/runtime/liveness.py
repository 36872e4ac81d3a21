"""This server process's liveness: a lease named for the process, renewed every second while it runs.

A provisioning batch's Idempotency-Key records the process working on it (``service.idempotency``).
If that process dies (SIGKILL, a crash, its host gone) its lease stops being renewed and lapses
``DEAD_AFTER`` after its last beat; a resend of the batch, to any process, then takes the key over at
once, where without a lease it would wait for ``service.idempotency.STALE_AFTER`` (minutes). A process
that stops gives its lease up, so its keys are free at once.

On SQLite one server process serves the database (``fabguard serve --workers`` needs PostgreSQL), so a
process starting there gives up every other process's lease: whoever held a key before it started is
gone, and the key is free at once. On PostgreSQL another process may well be alive: its lease lapses by
itself if it is not.

Leases are judged by wall-clock time, so hosts sharing a database keep their clocks within a second or
so of each other (NTP), as for every lease (``store.worker_leases``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Self

from fabguard.runtime.periodic import PeriodicWorker
from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases

log = logging.getLogger(__name__)

# A process whose lease was last renewed longer ago than this is dead: the one setting of the takeover.
DEAD_AFTER = timedelta(seconds=5)
BEAT_SECONDS = 1.0
LEASE_PREFIX = "process:"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class ProcessLiveness(PeriodicWorker):
    """Keeps this process's liveness lease on a daemon thread and names it on the instance
    (``inst.process_lease``) while it is held.

    Its lease is not the thread's to give up (``PeriodicWorker.lease``): ``stop`` gives it up once the
    instance no longer names it, even if a beat is stuck in the database, so this process's keys are free
    at once."""

    thread_name = "fabguard-liveness"
    log = log
    # Retried at the next beat; meanwhile the lease may lapse.
    round_failed = "could not renew this process's liveness lease"

    def __init__(
        self, inst: Instance, *, beat_seconds: float = BEAT_SECONDS, dead_after: timedelta = DEAD_AFTER
    ) -> None:
        super().__init__(inst, beat_seconds)
        self.name = f"{LEASE_PREFIX}{uuid.uuid4().hex}"
        self.beat_seconds = beat_seconds
        self.dead_after = dead_after
        self.hold = worker_leases.Hold(inst.db, self.name, ttl=dead_after, clock=_wall_clock, holder=self.name)

    def start(self) -> Self:
        """Beat once (on SQLite, first giving up the leases of processes gone before), then every second."""
        try:
            if self.inst.db.is_sqlite:
                with self.inst.db.transaction() as s:
                    gone = worker_leases.release_others(s, LEASE_PREFIX, self.name)
                if gone:
                    log.info("the keys of %d server process(es) gone before this one are free", gone)
            self.run_round()
        except Exception:  # the database may be away at start: the thread beats as soon as it is back
            log.exception("could not take this process's liveness lease yet")
        return super().start()

    def stop(self) -> None:
        """Stop beating and give the lease up: this process's keys are free at once."""
        super().stop()
        if self.inst.process_lease == self.name:
            self.inst.process_lease = None
        try:
            self.hold.release()
        except Exception:
            log.exception("could not give this process's liveness lease up; it lapses by itself")

    def run_round(self) -> None:
        """One beat: renew the lease, or take it again."""
        held = self.hold.renew(timedelta(0)) or self.hold.take()
        # Named only while held: a key taken for a lease nobody keeps would look abandoned at once.
        self.inst.process_lease = self.name if held else None
