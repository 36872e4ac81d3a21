"""``/metrics`` of a real ``fabguard serve --workers 2`` (issue 26, item 6): whichever worker answers a scrape,
the counters are the totals over both processes and never go down from one scrape to the next, not even
when a worker is killed and the supervisor starts another; the live figures (writer queue, pool) are one
sum per server and the process figures one series per live worker (``pid``); ``promtool`` finds nothing
to say. The workers' shared files live in a directory of this run alone (mode 0700, under ``TMPDIR``),
not in a ``PROMETHEUS_MULTIPROC_DIR`` the environment names, and are gone when the server stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from fabguard import __version__
from fabguard.api.multiprocess_metrics import private_metrics_dir
from fabguard.domain.errors import ConfigurationError
from fabguard.fixture.client import FabGuardClientError, FixtureClient
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.core.instance import Instance
from tests.served import free_port, init_instance, serve, stop, wait_healthy
from tests.service.provisioning.test_quota_concurrency import (
    enrol_fixtures,
    new_order,
    set_up_catalog,
    upload_passing_tests,
)
from tests.support import fresh_pg_database

UNTESTED = "test_missing"
HEALTH = "/livez"  # asked by this test alone (the start waits on /api/v1/health)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _until(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    """The worker processes of the server ``pid`` (not multiprocessing's resource tracker)."""
    workers = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.add(int(child))
        except FileNotFoundError:  # it has just exited
            pass
    return workers


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _requests(samples: Samples, route: str) -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "fabguard_http_requests_total" and dict(labels)["route"] == route
    )


def _pids(samples: Samples, name: str) -> set[int]:
    return {int(dict(labels)["pid"]) for (n, labels) in samples if n == name}


def _counted_by(folder: Path, name: str, **labels: str) -> dict[int, float]:
    """What each process counted in ``name``'s series with ``labels``, read from its own file in the
    shared directory."""
    counted: dict[int, float] = {}
    for file in folder.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(file)]):
            for s in metric.samples:
                if s.name == name and labels.items() <= s.labels.items():
                    counted[pid] = counted.get(pid, 0) + s.value
    return counted


def _answered_by(folder: Path, route: str) -> dict[int, float]:
    return _counted_by(folder, "fabguard_http_requests_total", route=route)


def _provision_on_both_workers(server: Server, home: Path, folder: Path, workers: set[int]) -> tuple[str, int]:
    """Units provisioned one a connection until both workers have provisioned some, then one refused
    (no test record); the order and the units provisioned."""
    inst = Instance.open(home)
    try:
        set_up_catalog(inst)
        order = new_order(inst, 100)
        (creds,) = enrol_fixtures(inst, server.url, home.parent / "fixtures", 1)
    finally:
        inst.close()
    provisioned = 0
    while set(_counted_by(folder, "fabguard_units_provisioned_total", order_id=order)) != workers:
        device = SimulatedDevice(f"SN-M{provisioned:04d}")
        with FixtureClient(creds) as fixture:  # a connection of its own: either worker
            upload_passing_tests(fixture, [device.serial])
            fixture.provision(order, device.serial, device.csr_pem())
        provisioned += 1
        assert provisioned < 60, "one worker provisioned every unit"
    with FixtureClient(creds) as fixture, pytest.raises(FabGuardClientError) as refused:
        fixture.provision(order, "SN-UNTESTED", SimulatedDevice("SN-UNTESTED").csr_pem())
    assert refused.value.code == UNTESTED
    return order, provisioned


class Server:
    def __init__(self, url: str, trust: Path, admin: str, proc: subprocess.Popen[bytes], log: Path, home: Path) -> None:
        self.url, self.proc, self.log, self.home = url, proc, log, home
        self.verify = ssl.create_default_context(cafile=str(trust))
        self.bearer = {"Authorization": f"Bearer {admin}"}

    def get(self, path: str) -> httpx.Response:
        """One request on a connection of its own: the kernel hands each new connection to either worker."""
        return httpx.get(f"{self.url}{path}", verify=self.verify, headers=self.bearer, timeout=30)

    def scrape(self) -> tuple[str, Samples]:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text, _samples(response.text)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, Path, Path]]:
    """A ``serve --workers 2`` on PostgreSQL, its temporary files under ``tmp``; also a directory an
    environment variable names for prometheus_client, which the server must leave alone."""
    tmp, named = tmp_path / "tmp", tmp_path / "named"
    tmp.mkdir()
    named.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(named))
    port, home = free_port(), tmp_path / "home"
    with fresh_pg_database() as database:
        admin = init_instance(home, port, "--database-url", database)
        log = tmp_path / "serve.log"
        proc = serve(home, log, port, "--workers", "2")
        try:
            url = f"https://127.0.0.1:{port}"
            wait_healthy(url, home / "ca" / "root.pem", proc)
            _until(lambda: log.read_text().count("Application startup complete") == 2, "both workers serve", 90)
            yield Server(url, home / "ca" / "root.pem", admin, proc, log, home), tmp, named
        finally:
            stop(proc)


@pytest.mark.slow
def test_every_scrape_counts_both_workers_and_no_counter_goes_down(served: tuple[Server, Path, Path]) -> None:
    server, tmp, named = served
    [folder] = tmp.glob("fabguard-metrics-*")
    assert folder.stat().st_mode & 0o777 == 0o700
    workers = _children(server.proc.pid)
    assert len(workers) == 2

    sent = 0
    while set(_answered_by(folder, HEALTH)) != workers:  # until both workers have answered some
        assert server.get(HEALTH).status_code == 200
        sent += 1
        assert sent < 400, f"one worker answered every request: {_answered_by(folder, HEALTH)}"
    # The last answer reaches the client a moment before its worker counts it.
    _until(lambda: sum(_answered_by(folder, HEALTH).values()) == sent, "every request counted")
    order, provisioned = _provision_on_both_workers(server, server.home, folder, workers)
    units = ("fabguard_units_provisioned_total", (("order_id", order),))
    refusals = ("fabguard_units_refused_total", (("code", UNTESTED), ("order_id", order)))

    scraped: list[Samples] = []
    while len(scraped) < 6 or set(_answered_by(folder, "/metrics")) != workers:
        text, samples = server.scrape()
        assert _requests(samples, HEALTH) == sent, "a scrape has every worker's requests"
        assert samples[units] == provisioned and samples[refusals] == 1, "and every worker's units"
        if scraped:
            _never_less(scraped[-1], samples)
        scraped.append(samples)
        assert len(scraped) < 60, "one worker answered every scrape"
    assert _requests(scraped[-1], "/metrics") >= len(scraped) - 2  # each scrape is counted once it is done

    last = scraped[-1]
    assert _pids(last, "process_start_time_seconds") == workers  # one series per live worker
    assert _pids(last, "process_resident_memory_bytes") == workers
    assert last[("process_cpu_seconds_total", ())] > 0  # summed: the server's workers' CPU
    assert ("fabguard_provisioning_queue_requests", ()) in last  # one sum per server
    assert last[("fabguard_db_pool_size_connections", ())] >= 2  # each worker's pool, summed
    assert last[("fabguard_build_info", (("version", __version__),))] == 1
    latency = (
        "fabguard_http_request_duration_seconds_count",
        (("method", "GET"), ("route", HEALTH), ("status", "200")),
    )
    assert last[latency] == sent
    _promtool_clean(text)
    assert list(named.iterdir()) == []  # the environment's directory is not the server's

    # A worker killed: the supervisor starts another; what the dead one counted stays counted.
    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    _until(lambda: len(_children(server.proc.pid) - workers) == 1, "the supervisor replaces the killed worker")
    now = _children(server.proc.pid)
    assert victim not in now and len(now) == 2
    _until(lambda: server.log.read_text().count("Application startup complete") == 3, "the new worker serves", 90)
    previous = last
    for _ in range(10):
        _, samples = server.scrape()
        assert _requests(samples, HEALTH) == sent and samples[units] == provisioned
        _never_less(previous, samples)
        previous = samples
    _until(lambda: _pids(server.scrape()[1], "process_start_time_seconds") == now, "the dead worker's gauges go")

    stop(server.proc)
    assert not folder.exists()  # the run's files go with it


def test_the_metrics_directory_is_new_private_and_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with private_metrics_dir() as first, private_metrics_dir() as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.stat().st_mode & 0o777 == 0o700 and list(first.iterdir()) == []
        (first / "counter_1.db").write_bytes(b"x")
    assert not first.exists() and not second.exists()


def test_no_writable_temporary_directory_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError) as refused, private_metrics_dir():
        pass
    assert refused.value.code == "configuration_error" and "TMPDIR" in str(refused.value)


def _never_less(before: Samples, after: Samples) -> None:
    """Every counter and histogram series of ``before`` is in ``after``, at least as high."""
    for key, value in before.items():
        name = key[0]
        counted = name.startswith(("fabguard_http", "fabguard_units", "fabguard_provisioning_group", "process_cpu"))
        if counted and name.endswith(("_total", "_bucket", "_count", "_sum")):
            assert after.get(key, -1) >= value, (key, value, after.get(key))


def _promtool_clean(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (Debian's prometheus package; scripts/test installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr
