"""The server process's field-check writer: one thread that decides the field checks of concurrent requests
together (ADR 0015), as the provisioning writer (``runtime.group_commit``) does for units.

Request threads prepare their answers (``service.field.checks.prepare``: the nonce's MAC and expiry, the
cryptography) and hand them to :meth:`FieldWriter.run`; the writer takes whatever is queued when it is
free, up to ``Limits.field_group_checks`` answers (a request's stay together), and decides them with
``decide_group``: one transaction, one commit. Nothing waits for a group to fill. Every request gets its
outcomes only after their commit. Until :meth:`start` and after :meth:`stop`, :meth:`run` decides in the
caller's thread. If the writer's thread itself ends (a bug, not a failed group: that is the group's
outcome), every request it holds or that comes later is answered ``field_writer_down`` (503).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from fabguard.domain.errors import Unavailable
from fabguard.service.core.instance import Instance
from fabguard.service.field.checks import Job, Outcome, Runner, decide_group

log = logging.getLogger(__name__)


class FieldWriterDown(Unavailable):
    """This process's field writer has stopped: nothing of the request was decided."""

    code = "field_writer_down"

    def __init__(
        self,
        message: str = "this server process's field-check writer has stopped; nothing was decided: send the "
        "answers again (to another server process, or once this one is restarted)",
    ) -> None:
        super().__init__(message)


@dataclass
class _Request:
    jobs: Sequence[Job]
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)


class FieldWriter:
    """One process's field-check writer; ``decide`` decides a group (a test may pass another)."""

    def __init__(self, inst: Instance, max_checks: int | None = None, *, decide: Runner | None = None) -> None:
        self.decide: Runner = decide if decide is not None else partial(decide_group, inst)
        self._max = max(1, max_checks if max_checks is not None else inst.limits.field_group_checks)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # running, down and the queue's last entry change together
        self._running = False
        self._down: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups decided and checks in them (for the bench and the tests)
        self.checks = 0

    @property
    def down(self) -> bool:
        return self._down is not None

    def start(self) -> FieldWriter:
        with self._lock:
            if not self._running and self._down is None:
                self._running = True
                self._thread = threading.Thread(target=self._run, name="fabguard-field-writer", daemon=True)
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
        """Decide ``jobs`` (perhaps beside other requests'); their outcomes, in order, after the commit."""
        request = _Request(jobs)
        with self._lock:
            if self._down is not None:
                return [FieldWriterDown() for _ in jobs]
            queued = self._running
            if queued:
                self._queue.put(request)
        if not queued:
            return self.decide(jobs)
        request.done.wait()
        return request.outcomes

    def _run(self) -> None:
        taken: list[_Request] = []
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                taken, count = [first], len(first.jobs)
                while count < self._max:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    taken.append(more)
                    count += len(more.jobs)
                self._decide(taken)
                taken = []
        except BaseException as exc:  # the thread ends here: no request may be left waiting for it
            self._die(taken, exc)

    def _decide(self, group: list[_Request]) -> None:
        jobs = [job for request in group for job in request.jobs]
        try:
            outcomes = self.decide(jobs)
        except Exception as exc:  # decide returns each check's error; this is a bug: fail the group only
            log.exception("a field-check group failed")
            outcomes = [exc for _ in jobs]
        self.groups += 1
        self.checks += len(jobs)
        at = 0
        for request in group:
            request.outcomes = outcomes[at : at + len(request.jobs)]
            at += len(request.jobs)
            request.done.set()

    def _die(self, taken: list[_Request], exc: BaseException) -> None:
        log.critical("the field-check writer died: this process answers field_writer_down", exc_info=exc)
        with self._lock:
            self._down = exc
        stranded = [request for request in taken if not request.done.is_set()]
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                stranded.append(request)
        for request in stranded:
            request.outcomes = [FieldWriterDown() for _ in request.jobs]
            request.done.set()
