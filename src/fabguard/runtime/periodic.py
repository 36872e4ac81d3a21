"""The one shape of a background worker: a daemon thread that runs one round every ``interval`` seconds
(or as ``wait_seconds`` says after each round) from ``start`` until ``stop``, logging a failed round and
trying again at the next one.

A worker that holds a lease (``store.worker_leases.Hold``) as ``lease`` gives it up when its thread
ends, in the thread: only once its last round is done (and recorded) may another process take over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Self

from fabguard.service.core.instance import Instance
from fabguard.store import worker_leases


class PeriodicWorker:
    """Runs ``run_round`` every ``interval`` seconds on a daemon thread named ``thread_name``.

    Subclasses name their thread, their logger and what they log when a round fails (``round_failed``)
    or the lease cannot be given up (``release_failed``), and may open what their rounds share for the
    life of the thread (``rounds``).
    """

    thread_name: ClassVar[str]
    log: ClassVar[logging.Logger]
    round_failed: ClassVar[str]
    release_failed: ClassVar[str] = ""

    def __init__(self, inst: Instance, interval: float, *, lease: worker_leases.Hold | None = None) -> None:
        self.inst = inst
        self.interval = interval
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the round in flight, waiting for the thread at most ``join_seconds``."""
        self._stop.set()
        self._thread.join(timeout=self.join_seconds())

    def join_seconds(self) -> float:
        return 10.0

    def wait_seconds(self) -> float:
        """How long to wait before the next round (``interval``, unless the worker says otherwise)."""
        return self.interval

    def run_round(self) -> None:
        """One round of the worker's job."""
        raise NotImplementedError

    @contextmanager
    def rounds(self) -> Iterator[None]:
        """What the rounds share while the thread runs (nothing by default)."""
        yield

    def _run(self) -> None:
        try:
            with self.rounds():
                while not self._stop.wait(self.wait_seconds()):
                    try:
                        self.run_round()
                    except Exception:  # a failed round is logged and retried at the next interval
                        self.log.exception(self.round_failed)
        finally:
            self._release()

    def _release(self) -> None:
        if self.lease is None:
            return
        try:
            self.lease.release()
        except Exception:
            self.log.exception(self.release_failed)


__all__ = ["PeriodicWorker"]
