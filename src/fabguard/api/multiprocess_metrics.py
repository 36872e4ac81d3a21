"""``/metrics`` with ``serve --workers N``: one view of the server, whichever worker answers the scrape.

The workers share one listening socket (uvicorn's supervisor binds it and hands it to each worker it
spawns), so each connection, a scrape's included, lands on any of them. prometheus_client's multiprocess
mode makes the answer the server's: every worker writes its counters, histograms and gauges into files of
its own (one a kind and process id) in one directory, and the worker that answers reads them all
(``MultiProcessCollector``), summing counters and histograms over the processes, dead ones included, so
that no total goes down when the supervisor replaces a worker.

- The directory is this run's alone: ``private_metrics_dir`` makes a new one (``tempfile.mkdtemp``: mode
  0700, under ``TMPDIR``) before the first worker starts and removes it when the supervisor stops; the
  ``serve`` command, which owns its process's environment, names it in ``PROMETHEUS_MULTIPROC_DIR`` for
  the workers spawned from then on (prometheus_client reads the variable when a process first imports it,
  so it must be in the worker's environment from its start). Servers sharing an instance directory or a
  host never share it; a ``PROMETHEUS_MULTIPROC_DIR`` already set is replaced.
- ``MetricsSupervisor`` tells prometheus_client of every worker that has exited (``mark_process_dead``):
  its live gauges leave the sums, its counters stay in them.
- What a worker can only read in itself (its writer's queue, its pool, its process) it writes every
  second (``WorkerFigures`` on a ``runtime.sampler.Sampler`` thread): the queue and the pool as ``livesum``
  gauges (the server's total over its live workers), the process's memory, file descriptors and start time
  as ``liveall`` gauges (one series a live worker, labelled ``pid``), its CPU time as a counter summed over
  the server's workers. A custom collector (the pool's), ``set_function`` (the queue's) and a registered
  ``ProcessCollector`` would show the answering process alone; here a ``ProcessCollector`` only reads
  ``/proc`` for the sampler.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from socket import socket
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, values
from prometheus_client.multiprocess import mark_process_dead

from fabguard.api.server_tls import ReloadingMultiprocess
from fabguard.domain.errors import ConfigurationError
from fabguard.runtime.field_writer import FieldWriter
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.runtime.sampler import Sampler
from fabguard.service.core.instance import Instance

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "fabguard-metrics-"
SAMPLE_SECONDS = 1.0
# ProcessCollector's gauges, one series a live worker; its CPU time becomes a counter summed over them.
PROCESS_GAUGES = (
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
)
PROCESS_CPU = "process_cpu_seconds_total"


@contextmanager
def private_metrics_dir() -> Iterator[Path]:
    """A new, empty directory for the workers' metric files (mode 0700, under ``TMPDIR``), removed when the
    block ends. ``serve`` names it in ``PROMETHEUS_MULTIPROC_DIR`` before the first worker is spawned."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot make the workers' metrics directory ({exc}): set TMPDIR to a directory this user may write"
        ) from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def worker_metrics_dir() -> Path | None:
    """In a worker process: the directory its supervisor made (``private_metrics_dir``), None if there is none
    (a worker of ``run_server`` called without one: its figures are then its own).

    Raises RuntimeError if prometheus_client is not in multiprocess mode here although the variable is set
    (it was imported before): the worker's figures would be its own alone, and the scrape would not say so."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return None
    if not Path(folder).is_dir() or not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(f"{MULTIPROC_ENV} names no directory prometheus_client writes to in this worker: {folder}")
    return Path(folder)


class MetricsSupervisor(ReloadingMultiprocess):
    """The supervisor of ``serve --workers N``: after each of its rounds (every half second: a dead or hung
    worker replaced, one added or removed by a signal), every worker that is no longer running is marked
    dead in ``metrics_dir``."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket], metrics_dir: Path) -> None:
        super().__init__(config, sockets=sockets)
        self.metrics_dir = metrics_dir
        self._running: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self.forget_exited()

    def forget_exited(self) -> None:
        running = {p.pid for p in self.processes if p.pid is not None and p.exitcode is None}
        for pid in self._running - running:
            mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        self._running = running


# Each writer's queue gauge: its name's word and the writer's.
WRITER_QUEUES = {"provisioning": "provisioning", "field": "field-check"}


def queue_gauge(writer: str, registry: CollectorRegistry | None) -> Gauge:
    """The gauge of the requests waiting for ``writer`` (a key of ``WRITER_QUEUES``): in one process, on
    ``registry``, where the caller makes it read the queue at scrape time (``set_function``); in a worker
    (``registry`` None: the shared files), a ``livesum`` gauge ``WorkerFigures`` writes, summed over the
    server's live workers."""
    helps = f"Requests waiting for the {WRITER_QUEUES[writer]} writer"
    if registry is None:
        helps += "s, summed over the server's live worker processes"
    return Gauge(f"fabguard_{writer}_queue_requests", f"{helps}.", multiprocess_mode="livesum", registry=registry)


def pool_figures(inst: Instance) -> tuple[int, int, int] | None:
    """The database pool's connections in use, idle, and its size; None for a pool that keeps none (SQLite's)."""
    pool: Any = inst.db.engine.pool
    if not all(hasattr(pool, name) for name in ("checkedout", "checkedin", "size")):  # not a QueuePool
        return None
    return int(pool.checkedout()), int(pool.checkedin()), int(pool.size())


class WorkerFigures:
    """What one worker writes for the others' scrapes, every ``SAMPLE_SECONDS`` on ``sampler``'s thread
    (started and stopped with the process's background workers)."""

    def __init__(self, inst: Instance, committer: GroupCommitter, field_writer: FieldWriter | None = None) -> None:
        self._inst = inst
        self._committer = committer
        self._field_writer = field_writer
        # registry=None: the shared files are the registry (MultiProcessCollector reads them).
        self.queue = queue_gauge("provisioning", None)
        self.field_queue = queue_gauge("field", None)
        self.pool = Gauge(
            "fabguard_db_pool_connections",
            "Database connections by state, summed over the server's live worker processes.",
            ["state"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self.pool_size = Gauge(
            "fabguard_db_pool_size_connections",
            "Connections the pools keep open, summed over the server's live worker processes.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self._process = ProcessCollector(registry=None)
        self.process = {
            name: Gauge(
                name, f"{doc} One series per live worker process (pid).", multiprocess_mode="liveall", registry=None
            )
            for name, doc in self._process_docs().items()
        }
        self.cpu = Counter(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds, summed over the server's worker processes.",
            registry=None,
        )
        self._cpu_seen = 0.0
        self.sampler = Sampler(inst, self.sample, SAMPLE_SECONDS)

    def _process_docs(self) -> dict[str, str]:
        docs = {family.name: family.documentation for family in self._process.collect()}
        return {name: docs.get(name, name.replace("_", " ") + ".") for name in PROCESS_GAUGES}

    def sample(self) -> None:
        """Write this process's figures as they are now into its files."""
        self.queue.set(self._committer.queue_depth)
        if self._field_writer is not None:
            self.field_queue.set(self._field_writer.queue_depth)
        figures = pool_figures(self._inst)
        if figures is not None:
            in_use, idle, size = figures
            self.pool.labels("in_use").set(in_use)
            self.pool.labels("idle").set(idle)
            self.pool_size.set(size)
        for family in self._process.collect():
            for s in family.samples:
                if s.name in self.process:
                    self.process[s.name].set(s.value)
                elif s.name == PROCESS_CPU and s.value > self._cpu_seen:
                    self.cpu.inc(s.value - self._cpu_seen)
                    self._cpu_seen = s.value


__all__ = [
    "MULTIPROC_ENV",
    "MetricsSupervisor",
    "WorkerFigures",
    "pool_figures",
    "private_metrics_dir",
    "queue_gauge",
    "worker_metrics_dir",
]
