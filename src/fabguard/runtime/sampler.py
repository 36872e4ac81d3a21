"""A thread that samples figures of this process every ``interval`` seconds (a ``PeriodicWorker``).

With ``serve --workers N`` a scrape is answered by one worker, which cannot ask the others how long
their writer's queue is or how many of their connections are in use: each worker writes these into its
own file of the shared metrics directory on this thread instead (``api/multiprocess_metrics.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Self

from fabguard.runtime.periodic import PeriodicWorker
from fabguard.service.core.instance import Instance


class Sampler(PeriodicWorker):
    """Calls ``sample`` once at ``start``, then every ``interval`` seconds until ``stop``."""

    thread_name = "fabguard-metrics-sampler"
    log = logging.getLogger("fabguard.metrics")
    round_failed = "sampling this process's metrics failed"

    def __init__(self, inst: Instance, sample: Callable[[], None], interval: float = 1.0) -> None:
        super().__init__(inst, interval)
        self._sample = sample

    def start(self) -> Self:
        try:  # a worker's figures are there from its first scrape on, not a second later
            self.run_round()
        except Exception:
            self.log.exception(self.round_failed)
        return super().start()

    def join_seconds(self) -> float:
        return 2.0

    def run_round(self) -> None:
        self._sample()


__all__ = ["Sampler"]
