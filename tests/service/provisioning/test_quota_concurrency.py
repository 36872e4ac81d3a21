"""The quota under real concurrency: many fixtures at once, one or two server processes, real TLS.

Whatever the interleaving, an order never issues one unit over its quota, every certificate that
leaves the server is recorded, every refusal is recorded, and the event sequence has no gap.
Also the two races where uniqueness decides: the same unit retried from several threads at once
(one certificate, handed to all), and a cloned key presented on several serials at once (one
certificate, the rest refused as ``key_reused``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fabguard.domain.values import FixtureId, ProductId, SiteId
from fabguard.fixture.client import Credentials, FabGuardClientError, FixtureClient, enroll
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.ledger import merkle
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.service.ledger import merkle_log
from fabguard.store.eventlog import event_count
from fabguard.store.models import Event, Order, Unit
from tests.served import ServerProcess
from tests.support import World, create_pg_database, drop_pg_database, pg_admin_url

CLIENTS = 32
QUOTA = 500
UNITS = 800
PRODUCT = "sensor"
SITE = "cm-a"


# ------------------------------------------------------------------ helpers shared with test_crash.py
def set_up_catalog(inst: Instance) -> None:
    product_catalog.create_product(inst, product_id=ProductId(PRODUCT), name="Sensor v2", actor="test")
    product_catalog.create_site(inst, site_id=SiteId(SITE), name="CM A", actor="test")


def new_order(inst: Instance, quota: int) -> str:
    return orders.create_order(inst, product_id=ProductId(PRODUCT), site_id=SiteId(SITE), quota=quota, actor="test").id


def enrol_fixtures(inst: Instance, server_url: str, where: Path, count: int, prefix: str = "fx") -> list[Credentials]:
    """Register ``count`` fixtures at SITE and enrol each over HTTPS (real key, real CSR, real certificate)."""
    creds = []
    for i in range(count):
        fixture_id = f"{prefix}-{i:02d}"
        _, token = fixtures.create_fixture(inst, fixture_id=FixtureId(fixture_id), site_id=SiteId(SITE), actor="test")
        creds.append(enroll(server_url, token, where / fixture_id, ca_file=inst.cas.cert_path("root")))
    return creds


@dataclass(frozen=True)
class PlannedUnit:
    serial: str
    csr: str


def make_units(count: int, prefix: str = "SN") -> list[PlannedUnit]:
    """Devices with their own keys; only the CSR (made on the device) is kept."""
    return [PlannedUnit(f"{prefix}{i:07d}", SimulatedDevice(f"{prefix}{i:07d}").csr_pem()) for i in range(1, count + 1)]


def upload_passing_tests(client: FixtureClient, serials: list[str], batch: int = 200) -> None:
    station = client.credentials.fixture_id
    rng = random.Random(7)
    for i in range(0, len(serials), batch):
        records = [openhtf_record(s, station, fail=False, rng=rng) for s in serials[i : i + batch]]
        results = client.upload_test_records(records)
        assert [r["status"] for r in results] == ["stored"] * len(records), results


@dataclass
class Outcome:
    """What the clients saw: certificates by serial, refusal codes by serial."""

    issued: dict[str, str] = field(default_factory=dict)
    replayed: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    answered: Counter[int] = field(default_factory=Counter)  # answers per client index
    lock: threading.Lock = field(default_factory=threading.Lock)

    def codes(self) -> Counter[str]:
        return Counter(self.refused.values())


def provision_all_at_once(clients: list[FixtureClient], order_id: str, units: list[PlannedUnit]) -> Outcome:
    """One thread per client, released together by a barrier; each works through its share of units."""
    outcome = Outcome()
    barrier = threading.Barrier(len(clients))
    shares = [units[i :: len(clients)] for i in range(len(clients))]

    def work(i: int) -> None:
        barrier.wait(timeout=60)
        for unit in shares[i]:
            try:
                issued = clients[i].provision(order_id, unit.serial, unit.csr)
            except FabGuardClientError as exc:
                with outcome.lock:
                    outcome.refused[unit.serial] = exc.code
                    outcome.answered[i] += 1
            else:
                with outcome.lock:
                    outcome.answered[i] += 1
                    assert unit.serial not in outcome.issued
                    outcome.issued[unit.serial] = issued.certificate_pem
                    outcome.replayed += int(issued.replayed)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        for f in [pool.submit(work, i) for i in range(len(clients))]:
            f.result()
    return outcome


def assert_gap_free_events(inst: Instance) -> list[int]:
    with inst.db.read() as s:
        seqs = list(s.execute(select(Event.seq).order_by(Event.seq)).scalars())
        counter = event_count(s)
    assert seqs, "no events at all"
    assert seqs == list(range(1, seqs[-1] + 1)), (
        f"gaps in the event sequence: {sorted(set(range(1, seqs[-1] + 1)) - set(seqs))[:20]}"
    )
    assert counter == seqs[-1], "the event counter and the last event disagree"
    # The Merkle tree grew with the log: the root from stored subtree nodes equals the root of the entries.
    with inst.db.read() as s:
        entries = [bytes(e) for e in s.execute(select(Event.entry).order_by(Event.seq)).scalars()]
    size, root = merkle_log.tree_head(inst)
    assert size == len(entries) and root == merkle.mth([merkle.leaf_hash(e) for e in entries])
    return seqs


@dataclass(frozen=True)
class Books:
    used: int
    quota: int
    unit_pems: dict[str, str]
    provisioned_serials: list[str]
    refusal_codes: Counter[str]


def read_books(inst: Instance, order_id: str) -> Books:
    with inst.db.read() as s:
        order = s.get(Order, order_id)
        assert order is not None
        rows = s.execute(select(Unit.serial, Unit.certificate_pem).where(Unit.order_id == order_id)).all()
        provisioned = list(
            s.execute(
                select(Event.serial).where(Event.kind == "unit.provisioned", Event.order_id == order_id)
            ).scalars()
        )
        refused = Counter(
            s.execute(select(Event.code).where(Event.kind == "unit.refused", Event.order_id == order_id)).scalars()
        )
        over = s.execute(select(func.count()).select_from(Order).where(Order.used > Order.quota)).scalar_one()
    assert over == 0, "an order is over its quota"
    return Books(order.used, order.quota, {r.serial: r.certificate_pem for r in rows}, provisioned, refused)


def assert_exact_books(inst: Instance, order_id: str, outcome: Outcome, *, quota: int, units: int) -> None:
    """The full accounting for a run where every unit was asked for exactly once."""
    refusals = units - quota
    assert outcome.codes() == Counter({"quota_exhausted": refusals}), outcome.codes()
    assert len(outcome.issued) == quota and outcome.replayed == 0
    assert len(set(outcome.issued.values())) == quota, "two units were handed the same certificate"
    assert set(outcome.issued) | set(outcome.refused) == {f"SN{i:07d}" for i in range(1, units + 1)}

    books = read_books(inst, order_id)
    assert books.used == quota
    assert len(books.unit_pems) == quota
    assert books.unit_pems == outcome.issued, "a certificate a client holds is not the one recorded for its unit"
    assert sorted(books.provisioned_serials) == sorted(outcome.issued)
    assert books.refusal_codes == Counter({"quota_exhausted": refusals})
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(Unit)).scalar_one() == quota
    assert_gap_free_events(inst)


# ------------------------------------------------------------------ 32 clients, one in-process server, SQLite
def test_32_fixtures_at_once_on_sqlite_issue_exactly_the_quota(world: World) -> None:
    order = world.order(quota=QUOTA)
    clients = [world.fixture(f"fx-{i:02d}") for i in range(CLIENTS)]
    units = make_units(UNITS)
    upload_passing_tests(clients[0], [u.serial for u in units])

    t0 = time.monotonic()
    outcome = provision_all_at_once(clients, order, units)
    elapsed = time.monotonic() - t0

    assert_exact_books(world.inst, order, outcome, quota=QUOTA, units=UNITS)
    print(f"sqlite: {UNITS} requests from {CLIENTS} clients in {elapsed:.1f} s")


# ------------------------------------------------------------------ 32 clients, two server processes, PostgreSQL
@pytest.fixture
def pg_instance(tmp_path: Path) -> Iterator[Instance]:
    if not pg_admin_url():
        pytest.skip("FABGUARD_TEST_PG_URL is not set (scripts/test starts a PostgreSQL cluster)")
    url = create_pg_database()
    home = tmp_path / "home"
    try:
        init_instance(home, organization="Acme Devices", database_url=url)
        inst = Instance.open(home)  # migrates before any server starts
        try:
            yield inst
        finally:
            inst.close()
    finally:
        drop_pg_database(url)


@pytest.mark.postgres
@pytest.mark.slow
def test_32_fixtures_across_two_server_processes_on_postgres_issue_exactly_the_quota(
    pg_instance: Instance, server_processes: Callable[[Path], ServerProcess], tmp_path: Path
) -> None:
    inst = pg_instance
    set_up_catalog(inst)
    order = new_order(inst, QUOTA)
    servers = [server_processes(inst.home), server_processes(inst.home)]
    creds = enrol_fixtures(inst, servers[0].url, tmp_path / "fixtures", CLIENTS)
    # Half of the fixtures talk to each process; both share the one database.
    clients = [FixtureClient(c, server=servers[i % 2].url) for i, c in enumerate(creds)]
    try:
        units = make_units(UNITS)
        upload_passing_tests(clients[1], [u.serial for u in units])

        t0 = time.monotonic()
        outcome = provision_all_at_once(clients, order, units)
        elapsed = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()

    for server in servers:
        assert server.proc is not None and server.proc.poll() is None, server.log_text()
    per_server: Counter[int] = Counter()
    for i, n in outcome.answered.items():
        per_server[i % 2] += n
    assert per_server == Counter({0: UNITS // 2, 1: UNITS // 2}), "both processes answer every request sent to them"
    assert_exact_books(inst, order, outcome, quota=QUOTA, units=UNITS)
    print(f"postgres, 2 processes: {UNITS} requests from {CLIENTS} clients in {elapsed:.1f} s")


def wait_for_workers(server: ServerProcess, n: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := server.worker_pids()) != n:
        assert time.monotonic() < deadline, f"{len(pids)} worker processes, not {n}:\n{server.log_text()}"
        time.sleep(0.1)
    return pids


@pytest.mark.postgres
@pytest.mark.slow
def test_serve_workers_2_runs_two_processes_that_share_the_quota_and_replaces_a_killed_one(
    pg_instance: Instance, server_processes: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    inst = pg_instance
    set_up_catalog(inst)
    order = new_order(inst, 40)
    server = server_processes(inst.home, workers=2)
    first = wait_for_workers(server, 2)
    creds = enrol_fixtures(inst, server.url, tmp_path / "fixtures", 8)
    clients = [FixtureClient(c, server=server.url) for c in creds]
    try:
        units = make_units(60)
        upload_passing_tests(clients[0], [u.serial for u in units])
        os.kill(first[0], signal.SIGKILL)  # a worker dies; the supervisor starts another on the same socket
        replaced = wait_for_workers(server, 2, timeout=90)  # the supervisor pings workers in turn, 30 s each at most
        assert first[0] not in replaced and first[1] in replaced
        outcome = provision_all_at_once(clients, order, units)
    finally:
        for c in clients:
            c.close()
    assert server.proc is not None and server.proc.poll() is None, server.log_text()
    assert_exact_books(inst, order, outcome, quota=40, units=60)


SLOW_START_ENV = "FABGUARD_TEST_SLOW_WORKER_START"
SLOW_SITECUSTOMIZE = f"""\
import os, time
if os.environ.get({SLOW_START_ENV!r}) and b"spawn_main" in open("/proc/self/cmdline", "rb").read():
    time.sleep(float(os.environ[{SLOW_START_ENV!r}]))
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_serve_workers_comes_up_when_a_worker_takes_longer_than_5_s_to_start(
    pg_instance: Instance,
    server_processes: Callable[..., ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a loaded 2-core machine importing the app in a fresh worker took over 5 s, uvicorn's default
    healthcheck timeout: the supervisor killed each worker as hung before it could answer and started
    another, for ever, so the server never came up (and a worker replaced under load never would).
    Here every worker sleeps 8 s before it even imports (a ``sitecustomize`` on its PYTHONPATH)."""
    site = tmp_path / "slow-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(SLOW_START_ENV, "8")
    server = server_processes(pg_instance.home, workers=2)  # healthy within its 30 s, or it raises
    first = wait_for_workers(server, 2)
    time.sleep(1.0)
    assert wait_for_workers(server, 2) == first, "the supervisor replaced a worker that was only starting"


# ------------------------------------------------------------------ uniqueness races (both engines)
THREADS = 8
ROUNDS = 4


def at_once(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` for i < n on n threads released together; returns results or the exceptions raised."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=30)
        try:
            return call(i)
        except FabGuardClientError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("quota", [1, 50], ids=["last-unit-of-quota", "quota-to-spare"])
def test_same_unit_retried_by_8_threads_at_once_gets_one_certificate(any_world: World, quota: int) -> None:
    fx = any_world.fixture("fx-1")
    clients = [fx, *(any_world.fixture(f"fx-{i}") for i in range(2, THREADS + 1))]
    for r in range(ROUNDS):
        order = any_world.order(quota=quota)
        serial = f"SN{r:07d}"
        device = SimulatedDevice(serial)
        upload_passing_tests(fx, [serial])
        csr = device.csr_pem()

        results = at_once(
            THREADS, lambda i, order=order, serial=serial, csr=csr: clients[i].provision(order, serial, csr)
        )

        errors = [f"{e.status} {e.code}: {e.message}" for e in results if isinstance(e, FabGuardClientError)]
        assert not errors, f"round {r}: an idempotent retry was refused: {errors}"
        assert len({res.certificate_pem for res in results}) == 1, f"round {r}: different certificates for one unit"
        assert sum(not res.replayed for res in results) == 1, f"round {r}: more than one fresh issuance"
        books = read_books(any_world.inst, order)
        assert books.used == 1
        assert books.unit_pems == {serial: results[0].certificate_pem}
        assert books.provisioned_serials == [serial]
        assert books.refusal_codes == Counter()
    assert_gap_free_events(any_world.inst)


@pytest.mark.parametrize("quota", [1, 50], ids=["last-unit-of-quota", "quota-to-spare"])
def test_one_key_on_8_serials_at_once_issues_once_and_refuses_the_clones(any_world: World, quota: int) -> None:
    clients = [any_world.fixture(f"fx-{i}") for i in range(1, THREADS + 1)]
    for r in range(ROUNDS):
        order = any_world.order(quota=quota)
        original = SimulatedDevice(f"SN{r:03d}0000")
        devices = [original, *(original.clone_as(f"SN{r:03d}000{i}") for i in range(1, THREADS))]
        upload_passing_tests(clients[0], [d.serial for d in devices])
        csrs = [d.csr_pem() for d in devices]

        results = at_once(
            THREADS,
            lambda i, order=order, csrs=csrs, devices=devices: clients[i].provision(order, devices[i].serial, csrs[i]),
        )

        issued = [res for res in results if not isinstance(res, FabGuardClientError)]
        codes = Counter(res.code for res in results if isinstance(res, FabGuardClientError))
        assert len(issued) == 1, f"round {r}: one key was certified {len(issued)} times"
        assert codes == Counter({"key_reused": THREADS - 1}), f"round {r}: clones refused as {dict(codes)}"
        books = read_books(any_world.inst, order)
        assert books.used == 1
        assert list(books.unit_pems.values()) == [issued[0].certificate_pem]
        assert books.refusal_codes == Counter({"key_reused": THREADS - 1})
    assert_gap_free_events(any_world.inst)
