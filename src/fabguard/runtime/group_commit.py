"""The server process's provisioning writer: one thread that decides the units of concurrent requests together.

Request threads hand their units (``service/provisioning/group.py``'s ``Job``) to :meth:`GroupCommitter.run` and
wait; an event loop hands them to :meth:`GroupCommitter.submit` with a callback and awaits a future. The writer
takes whatever is queued when it is free, up to ``Limits.group_commit_units`` units (a request's units stay
together), and decides them with ``run_jobs``: one transaction and one commit for the group, each unit decided
on its own. Nothing waits for a group to fill: a lone request is
decided at once, and a group forms only from requests that arrived while the writer was busy, so the
busier the server, the less each unit costs. Every request gets its own units' outcomes, and only after
their commit.

Until :meth:`start` and after :meth:`stop`, :meth:`run` decides in the caller's thread.

A group that fails with an error is that group's failure (each of its units gets the error), and the
writer goes on. If the writer's thread itself ends (a ``BaseException`` that is no ``Exception``, a bug
in the loop), no request may wait for it: the requests it had taken and those queued behind it are
answered ``provisioning_writer_down`` (503) at once, later ones too, and :meth:`check` (the health
route) says the process is down, so that it is restarted. Every unit gets an exception object of its
own: one object raised in several request threads would have its traceback rewritten under each.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from fabguard.domain.errors import Unavailable
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome, Runner, run_jobs

log = logging.getLogger(__name__)

# Told of every decided group, its jobs and their outcomes in order (the API's metrics count them).
Observer = Callable[[Sequence[Job], Sequence[Outcome]], None]


class WriterDown(Unavailable):
    """This process's provisioning writer has stopped: nothing of the request was decided."""

    code = "provisioning_writer_down"

    def __init__(
        self,
        message: str = "this server process's provisioning writer has stopped; nothing was decided: send the "
        "request again (to another server process, or once this one is restarted)",
    ) -> None:
        super().__init__(message)


# Told a submitted request's outcomes, in the writer's thread, after their commit (``GroupCommitter.submit``).
Callback = Callable[[list[Outcome]], None]


@dataclass
class _Request:
    jobs: Sequence[Job]
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    callback: Callback | None = None

    def finish(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        self.done.set()
        if self.callback is not None:
            try:
                self.callback(outcomes)
            except Exception:  # e.g. the asking event loop has closed: no one is left to answer
                log.exception("a provisioning request's callback failed")


class GroupCommitter:
    """One process's provisioning writer. ``decide`` decides a group (``run_jobs`` on ``inst``; a test may
    pass another to make a group fail, or the writer die)."""

    def __init__(self, inst: Instance, max_units: int | None = None, *, decide: Runner | None = None) -> None:
        self.decide: Runner = decide if decide is not None else partial(run_jobs, inst)
        self._max_units = max(1, max_units if max_units is not None else inst.limits.group_commit_units)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # running, down and the queue's last entry change together
        self._running = False
        self._down: BaseException | None = None  # what ended the writer's thread
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups committed and units in them (for the bench and the tests)
        self.units = 0
        self.observer: Observer | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the writer (not those it is deciding now)."""
        return self._queue.qsize()

    @property
    def down(self) -> bool:
        """The writer's thread ended without being stopped: this process provisions nothing any more."""
        return self._down is not None

    def check(self) -> None:
        """Raise ``provisioning_writer_down`` (503) once the writer has died (the health route asks)."""
        if self._down is not None:
            raise _writer_down(self._down)

    def start(self) -> GroupCommitter:
        with self._lock:
            if not self._running and self._down is None:
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
            if self._down is not None:
                return [_writer_down(self._down) for _ in jobs]
            if self._running:
                self._queue.put(request)
                queued = True
            else:
                queued = False
        if not queued:
            outcomes = _each_its_own(self.decide(jobs))
            self._observe(jobs, outcomes)
            return outcomes
        request.done.wait()
        return request.outcomes

    def submit(self, jobs: Sequence[Job], callback: Callback) -> bool:
        """Queue ``jobs`` without waiting: ``callback`` gets their outcomes, in order, after their commit, in
        the writer's thread (an event loop's caller hands them back to itself with ``call_soon_threadsafe``,
        no request thread blocked meanwhile). False, and nothing queued, while the writer is not running
        (the caller then uses :meth:`run`)."""
        request = _Request(jobs, callback=callback)
        with self._lock:
            down = self._down
            if down is None:
                if not self._running:
                    return False
                self._queue.put(request)
        if down is not None:
            request.finish([_writer_down(down) for _ in jobs])
        return True

    def _run(self) -> None:
        taken: list[_Request] = []
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                taken = [first]
                units = len(first.jobs)
                while units < self._max_units:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    taken.append(more)
                    units += len(more.jobs)
                self._decide(taken)
                taken = []
        except BaseException as exc:  # the thread ends here: no request may be left waiting for it
            self._die(taken, exc)

    def _decide(self, group: list[_Request]) -> None:
        jobs = [job for request in group for job in request.jobs]
        try:
            outcomes: list[Outcome] = self.decide(jobs)
        except Exception as exc:  # decide returns units' errors; this is a bug: fail the group, not the writer
            log.exception("a provisioning group failed")
            outcomes = [exc] * len(jobs)
        outcomes = _each_its_own(outcomes)
        self.groups += 1
        self.units += len(jobs)
        self._observe(jobs, outcomes)
        at = 0
        for request in group:
            request.finish(outcomes[at : at + len(request.jobs)])
            at += len(request.jobs)

    def _observe(self, jobs: Sequence[Job], outcomes: Sequence[Outcome]) -> None:
        if self.observer is not None:
            try:
                self.observer(jobs, outcomes)
            except Exception:  # counting must never cost a unit its answer
                log.exception("the provisioning observer failed")

    def _die(self, taken: list[_Request], exc: BaseException) -> None:
        log.critical(
            "the provisioning writer died: this process answers provisioning_writer_down until it is restarted",
            exc_info=exc,
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
            request.finish([_writer_down(exc) for _ in request.jobs])


def _writer_down(cause: BaseException) -> WriterDown:
    error = WriterDown()
    error.__cause__ = cause
    return error


def _each_its_own(outcomes: list[Outcome]) -> list[Outcome]:
    """``outcomes`` with every exception object that comes again replaced by a twin of its own (same
    class, arguments, attributes, cause and traceback so far), so no two request threads raise one object."""
    seen: set[int] = set()
    owned: list[Outcome] = []
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
