"""A server process's group writer: one thread that decides the jobs of concurrent requests together.

The provisioning writer (``runtime.group_commit``, units) and the field-check writer (``runtime.field_writer``,
devices' answers, ADR 0015) are both this loop over their own jobs and their own ``decide``.

Request threads hand their jobs to :meth:`GroupWriter.run` and wait; an event loop hands them to
:meth:`GroupWriter.submit` with a callback and awaits a future. The writer takes whatever is queued when it
is free, up to ``max_jobs`` jobs (a request's jobs stay together, so one request alone may pass the bound),
and decides them with ``decide``: one transaction and one commit for the group, each job decided on its
own. Nothing waits for a group to fill: a lone request is decided at once, and a group forms only from
requests that arrived while the writer was busy, so the busier the server, the less each job costs. Every
request gets its own jobs' outcomes, and only after their commit.

Until :meth:`start` and after :meth:`stop`, :meth:`run` decides in the caller's thread.

A group that fails with an error is that group's failure (each of its jobs gets the error), and the writer
goes on. If the writer's thread itself ends (a ``BaseException`` that is no ``Exception``, a bug in the
loop), no request may wait for it: the requests it had taken and those queued behind it are answered with
the writer's own ``Unavailable`` (503, e.g. ``provisioning_writer_down``) at once, later ones too, and
:meth:`check` (the health routes) raises it, so that the process is restarted. Every job gets an exception
object of its own: one object raised in several request threads would have its traceback rewritten under
each.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Self, TypeVar

from fabguard.domain.errors import Unavailable

log = logging.getLogger(__name__)

J = TypeVar("J")  # what a request hands the writer: one unit, one device's answer
R = TypeVar("R")  # what deciding a job gives (an exception is always an outcome too)


@dataclass
class _Request(Generic[J, R]):
    jobs: Sequence[J]
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[R | BaseException] = field(default_factory=list)
    callback: Callable[[list[R | BaseException]], None] | None = None

    def finish(self, outcomes: list[R | BaseException]) -> None:
        self.outcomes = outcomes
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(outcomes)
            except Exception:  # e.g. the asking event loop has closed: no one is left to answer
                log.exception("a request's callback failed")


class GroupWriter(Generic[J, R]):
    """One process's writer of one kind of job.

    ``decide`` decides a group in one transaction (a test may swap it to make a group fail, or the writer
    die); ``down`` makes the writer's own 503 once its thread has ended; ``what`` names the writer in the
    log ("provisioning", "field-check"); ``observer``, when set, is told of every decided group, its jobs
    and their outcomes in order (the API's metrics count them); ``groups`` and ``jobs`` count the groups
    decided by the writer's thread and the jobs in them."""

    def __init__(
        self,
        decide: Callable[[Sequence[J]], list[R | BaseException]],
        max_jobs: int,
        *,
        down: Callable[[], Unavailable],
        what: str,
        thread_name: str,
    ) -> None:
        self.decide = decide
        self._max_jobs = max(1, max_jobs)
        self._make_down = down
        self._what = what
        self._thread_name = thread_name
        self._queue: queue.SimpleQueue[_Request[J, R] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # running, down and the queue's last entry change together
        self._running = False
        self._down: BaseException | None = None  # what ended the writer's thread
        self._thread: threading.Thread | None = None
        self.groups = 0
        self.jobs = 0
        self.observer: Callable[[Sequence[J], Sequence[R | BaseException]], None] | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the writer (not those it is deciding now)."""
        return self._queue.qsize()

    @property
    def down(self) -> bool:
        """The writer's thread ended without being stopped: this process decides none of its jobs any more."""
        return self._down is not None

    def check(self) -> None:
        """Raise the writer's own 503 once it has died (the health routes ask)."""
        if self._down is not None:
            raise self._writer_down(self._down)

    def start(self) -> Self:
        with self._lock:
            if not self._running and self._down is None:
                self._running = True
                self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
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

    def run(self, jobs: Sequence[J]) -> list[R | BaseException]:
        """Decide ``jobs`` (perhaps beside other requests' jobs); their outcomes, in order, after the commit."""
        request: _Request[J, R] = _Request(jobs)
        with self._lock:
            if self._down is not None:
                return [self._writer_down(self._down) for _ in jobs]
            queued = self._running
            if queued:
                self._queue.put(request)
        if not queued:
            outcomes = _each_its_own(self.decide(jobs))
            self._observe(jobs, outcomes)
            return outcomes
        request.done.wait()
        return request.outcomes

    def submit(self, jobs: Sequence[J], callback: Callable[[list[R | BaseException]], None]) -> bool:
        """Queue ``jobs`` without waiting: ``callback`` gets their outcomes, in order, after their commit, in
        the writer's thread (an event loop's caller hands them back to itself with ``call_soon_threadsafe``,
        no request thread blocked meanwhile). False, and nothing queued, while the writer is not running
        (the caller then uses :meth:`run`)."""
        request: _Request[J, R] = _Request(jobs, callback=callback)
        with self._lock:
            down = self._down
            if down is None:
                if not self._running:
                    return False
                self._queue.put(request)
        if down is not None:
            request.finish([self._writer_down(down) for _ in jobs])
        return True

    def _run(self) -> None:
        taken: list[_Request[J, R]] = []
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                taken, count = [first], len(first.jobs)
                while count < self._max_jobs:
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

    def _decide(self, group: list[_Request[J, R]]) -> None:
        jobs = [job for request in group for job in request.jobs]
        try:
            outcomes = self.decide(jobs)
        except Exception as exc:  # decide returns jobs' errors; this is a bug: fail the group, not the writer
            log.exception("a %s group failed", self._what)
            outcomes = [exc] * len(jobs)
        outcomes = _each_its_own(outcomes)
        self.groups += 1
        self.jobs += len(jobs)
        self._observe(jobs, outcomes)
        at = 0
        for request in group:
            request.finish(outcomes[at : at + len(request.jobs)])
            at += len(request.jobs)

    def _observe(self, jobs: Sequence[J], outcomes: Sequence[R | BaseException]) -> None:
        if self.observer is not None:
            try:
                self.observer(jobs, outcomes)
            except Exception:  # counting must never cost a job its answer
                log.exception("the %s writer's observer failed", self._what)

    def _die(self, taken: list[_Request[J, R]], exc: BaseException) -> None:
        code = self._make_down().code
        log.critical(
            "the %s writer died: this process answers %s until it is restarted", self._what, code, exc_info=exc
        )
        with self._lock:  # from here on nothing is queued: what is in the queue now is all there will be
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
            request.finish([self._writer_down(exc) for _ in request.jobs])

    def _writer_down(self, cause: BaseException) -> Unavailable:
        error = self._make_down()
        error.__cause__ = cause
        return error


def _each_its_own(outcomes: list[R | BaseException]) -> list[R | BaseException]:
    """``outcomes`` with every exception object that comes again replaced by a twin of its own (same
    class, arguments, attributes, cause and traceback so far), so no two request threads raise one object."""
    seen: set[int] = set()
    owned: list[R | BaseException] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            if id(outcome) in seen:
                outcome = _twin(outcome)
            seen.add(id(outcome))
        owned.append(outcome)
    return owned


def _twin(exc: BaseException) -> BaseException:
    twin = type(exc).__new__(type(exc), *exc.args)
    twin.args = exc.args
    twin.__dict__.update(exc.__dict__)
    twin.__cause__, twin.__context__ = exc.__cause__, exc.__context__
    twin.__suppress_context__ = exc.__suppress_context__
    return twin.with_traceback(exc.__traceback__)


__all__ = ["GroupWriter"]
