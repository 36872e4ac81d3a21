"""The server's own metrics on ``/metrics`` (beside ``routes/dashboard.py``'s production figures): HTTP
requests and their latency by route template and status, process and build information, units
provisioned and refused by order and code, the provisioning and field-check writers' group sizes and
queues, and the database pool's connections. docs/operations.md ("Metrics") lists them.

Every figure is this process's: with ``serve --workers N`` each process counts its own requests and units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fabguard import __version__
from fabguard.runtime.field_writer import FieldWriter
from fabguard.runtime.group_commit import GroupCommitter
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
        pool: Any = self._inst.db.engine.pool
        connections = GaugeMetricFamily(
            "fabguard_db_pool_connections", "Database connections of this process by state.", labels=["state"]
        )
        size = GaugeMetricFamily("fabguard_db_pool_size_connections", "Connections the pool keeps open.")
        if all(hasattr(pool, name) for name in ("checkedout", "checkedin", "size")):  # a QueuePool
            connections.add_metric(["in_use"], pool.checkedout())
            connections.add_metric(["idle"], pool.checkedin())
            size.add_metric([], pool.size())
        yield from (connections, size)


class ServerMetrics:
    """The metrics this process keeps, registered on ``registry`` (the one ``/metrics`` serves)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        inst: Instance,
        committer: GroupCommitter,
        field_writer: FieldWriter | None = None,
    ) -> None:
        self.requests = Counter(
            "fabguard_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fabguard_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.provisioned = Counter(
            "fabguard_units_provisioned",
            "Units given a certificate by this process, by order.",
            ["order_id"],
            registry=registry,
        )
        self.refused = Counter(
            "fabguard_units_refused",
            "Units refused by this process, by order (empty when it names no order) and reason code.",
            ["order_id", "code"],
            registry=registry,
        )
        self.groups = Histogram(
            "fabguard_provisioning_group_units",
            "Units decided together in one transaction by the provisioning writer.",
            buckets=GROUP_BUCKETS,
            registry=registry,
        )
        queue = Gauge(
            "fabguard_provisioning_queue_requests",
            "Requests waiting for the provisioning writer.",
            registry=registry,
        )
        queue.set_function(lambda: committer.queue_depth)
        build = Info("fabguard_build", "The FabGuard version this process runs.", registry=registry)
        build.info({"version": __version__})
        ProcessCollector(registry=registry)
        registry.register(PoolCollector(inst))
        committer.observer = self.observe_group
        if field_writer is not None:
            self._field_writer_metrics(registry, field_writer)

    def _field_writer_metrics(self, registry: CollectorRegistry, writer: FieldWriter) -> None:
        checks = Histogram(
            "fabguard_field_group_checks",
            "Field checks decided together in one transaction by the field-check writer.",
            buckets=GROUP_BUCKETS,
            registry=registry,
        )
        queue = Gauge(
            "fabguard_field_queue_requests",
            "Requests waiting for the field-check writer.",
            registry=registry,
        )
        queue.set_function(lambda: writer.queue_depth)
        writer.observer = lambda jobs, _outcomes: checks.observe(len(jobs))

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
