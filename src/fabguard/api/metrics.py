"""The server's own metrics on ``/metrics`` (beside ``routes/dashboard.py``'s production figures): HTTP
requests and their latency by route template and status, process and build information, units
provisioned and refused by order and code, the provisioning and field-check writers' group sizes and
queues, and the database pool's connections. docs/operations.md ("Metrics") lists them.

In one process (``serve``'s default) every figure is that process's. With ``serve --workers N`` (a
``multiprocess_dir``) a scrape has the server's figures whichever worker answers it: counters and
histograms summed over the workers, the writer's queue and the pool summed over the live ones, process
figures one series a live worker (``api/multiprocess_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from fabguard import __version__
from fabguard.api.multiprocess_metrics import WorkerFigures, pool_figures, queue_gauge
from fabguard.runtime.field_writer import FieldWriter
from fabguard.runtime.group_commit import GroupCommitter
from fabguard.runtime.periodic import PeriodicWorker
from fabguard.service.core.idempotency import Answer
from fabguard.service.core.instance import Instance
from fabguard.service.provisioning.group import Job, Outcome
from fabguard.service.provisioning.unit_requests import Provisioned, UnitRequest

# A path that matched no route (a 404, a scanner) is counted under this route label, never its own path.
UNMATCHED = "unmatched"
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PoolCollector(Collector):
    """The database pool's connections at scrape time: in use, idle, and the pool's size."""

    def __init__(self, inst: Instance) -> None:
        self._inst = inst

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(
            "fabguard_db_pool_connections", "Database connections of this process by state.", labels=["state"]
        )
        size = GaugeMetricFamily("fabguard_db_pool_size_connections", "Connections the pool keeps open.")
        figures = pool_figures(self._inst)
        if figures is not None:
            in_use, idle, pool_size = figures
            connections.add_metric(["in_use"], in_use)
            connections.add_metric(["idle"], idle)
            size.add_metric([], pool_size)
        yield from (connections, size)


class ServerMetrics:
    """The metrics this process keeps, registered on ``registry`` (the one ``/metrics`` serves); with a
    ``multiprocess_dir`` (a worker of ``serve --workers N``), written to its files and read from everyone's.

    ``threads`` run with the app's background workers (a worker's sampler; none in one process)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        inst: Instance,
        committer: GroupCommitter,
        field_writer: FieldWriter | None = None,
        *,
        multiprocess_dir: Path | None = None,
    ) -> None:
        # In multiprocess mode the metrics are registered nowhere: the shared files are their registry.
        own = registry if multiprocess_dir is None else None
        self.requests = Counter(
            "fabguard_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "fabguard_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.provisioned = Counter(
            "fabguard_units_provisioned",
            "Units given a certificate, by order.",
            ["order_id"],
            registry=own,
        )
        self.refused = Counter(
            "fabguard_units_refused",
            "Units refused, by order (empty when it names no order) and reason code.",
            ["order_id", "code"],
            registry=own,
        )
        self.groups = Histogram(
            "fabguard_provisioning_group_units",
            "Units decided together in one transaction by the provisioning writer.",
            buckets=GROUP_BUCKETS,
            registry=own,
        )
        build = Info("fabguard_build", "The FabGuard version this process runs.", registry=registry)
        build.info({"version": __version__})  # the same in every worker: the answering one's is the server's
        self.workers: WorkerFigures | None = None
        if multiprocess_dir is None:
            queue_gauge("provisioning", registry).set_function(lambda: committer.queue_depth)
            ProcessCollector(registry=registry)
            registry.register(PoolCollector(inst))
        else:
            MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
            self.workers = WorkerFigures(inst, committer, field_writer)
        committer.observer = self.observe_group
        if field_writer is not None:
            self._field_writer_metrics(registry, own, field_writer)

    def _field_writer_metrics(
        self, registry: CollectorRegistry, own: CollectorRegistry | None, writer: FieldWriter
    ) -> None:
        checks = Histogram(
            "fabguard_field_group_checks",
            "Field checks decided together in one transaction by the field-check writer.",
            buckets=GROUP_BUCKETS,
            registry=own,
        )
        if self.workers is None:  # with workers, WorkerFigures samples the queue into the shared files
            queue_gauge("field", registry).set_function(lambda: writer.queue_depth)
        writer.observer = lambda jobs, _outcomes: checks.observe(len(jobs))

    @property
    def threads(self) -> tuple[PeriodicWorker, ...]:
        return () if self.workers is None else (self.workers.sampler,)

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        labels = (method, route or UNMATCHED, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_group(self, jobs: Sequence[Job], outcomes: Sequence[Outcome]) -> None:
        """Count a decided group's units: provisioned by order, refused by order and code (replays not)."""
        self.groups.observe(len(jobs))
        for job, outcome in zip(jobs, outcomes, strict=True):
            order = job.request.order_id.value if isinstance(job.request, UnitRequest) else ""
            if isinstance(outcome, Provisioned):
                if not outcome.replayed:
                    self.provisioned.labels(outcome.order_id).inc()
            elif isinstance(outcome, Answer):
                if outcome.replayed:
                    continue
                if outcome.status < 400:
                    self.provisioned.labels(order).inc()
                else:
                    self._refused(order, _answer_code(outcome))
            else:
                self._refused(order, str(getattr(outcome, "code", "internal_error")))

    def _refused(self, order: str, code: str) -> None:
        # An order that does not exist is a caller's string: it gets no series of its own.
        self.refused.labels("" if code == "order_not_found" else order, code).inc()


def _answer_code(answer: Answer) -> str:
    error = answer.body.get("error")
    return str(error.get("code", "unknown")) if isinstance(error, dict) else "unknown"


__all__ = ["UNMATCHED", "PoolCollector", "ServerMetrics"]
