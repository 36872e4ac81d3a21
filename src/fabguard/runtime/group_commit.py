"""The server process's provisioning writer: one thread that decides the units of concurrent requests together.

Request threads hand their units (``service.provisioning_group.Job``) to :meth:`GroupCommitter.run` and
wait. The writer takes whatever is queued when it is free, up to ``Limits.group_commit_units`` units
(a request's units stay together), and decides them with ``run_jobs``: one transaction and one commit
for the group, each unit decided on its own. Nothing waits for a group to fill: a lone request is
decided at once, and a group forms only from requests that arrived while the writer was busy, so the
busier the server, the less each unit costs. Every request gets its own units' outcomes, and only after
their commit.

Until :meth:`start` and after :meth:`stop`, :meth:`run` decides in the caller's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from fabguard.service.instance import Instance
from fabguard.service.provisioning_group import Job, Outcome, run_jobs

log = logging.getLogger(__name__)


@dataclass
class _Request:
    jobs: Sequence[Job]
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)


class GroupCommitter:
    def __init__(self, inst: Instance, max_units: int | None = None) -> None:
        self._inst = inst
        self._max_units = max(1, max_units if max_units is not None else inst.limits.group_commit_units)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # running and the queue's last entry change together
        self._running = False
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups committed and units in them (for the bench and the tests)
        self.units = 0

    def start(self) -> GroupCommitter:
        with self._lock:
            if not self._running:
                self._running = True
                self._thread = threading.Thread(target=self._run, name="fabguard-group-commit", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        """Decide what is queued, then stop; later calls decide in their own thread."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Decide ``jobs`` (perhaps beside other requests' units); their outcomes, in order, after the commit."""
        request = _Request(jobs)
        with self._lock:
            if self._running:
                self._queue.put(request)
                queued = True
            else:
                queued = False
        if not queued:
            return run_jobs(self._inst, jobs)
        request.done.wait()
        return request.outcomes

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            units = len(first.jobs)
            while units < self._max_units:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
                units += len(more.jobs)
            self._decide(group)

    def _decide(self, group: list[_Request]) -> None:
        jobs = [job for request in group for job in request.jobs]
        try:
            outcomes: list[Outcome] = run_jobs(self._inst, jobs)
        except BaseException as exc:  # run_jobs returns units' errors; this is a bug: fail the group, not the thread
            log.exception("the group commit writer failed")
            outcomes = [exc] * len(jobs)
        self.groups += 1
        self.units += len(jobs)
        at = 0
        for request in group:
            request.outcomes = outcomes[at : at + len(request.jobs)]
            at += len(request.jobs)
            request.done.set()
