"""Torture on PostgreSQL: 64 fixtures on 4 server processes while a worker, PostgreSQL and connections die.

Two ``fabguard serve --workers 2`` (four worker processes, two supervisors) share one database on a
PostgreSQL cluster of this test's own, with default durability (fsync on), so the test may SIGKILL
PostgreSQL itself and start it again. 64 fixtures provision units on three orders whose quotas are
smaller than the units offered; some units are asked again after their answer (a retry: the same
certificate, replayed), some keys come back on another serial (a clone: ``key_reused``), and some
requests are dropped by the fixture mid-request (the answer not read, or the body not even sent) and
sent again with the same Idempotency-Key. During the load one worker is SIGKILLed (its supervisor
starts another) and the whole PostgreSQL server is SIGKILLed, kept down a moment, and restarted
(crash recovery from its WAL). Meanwhile a fixture may see a dropped connection or a 5xx, and asks
again with the same serial, CSR and key; a wrong answer is never acceptable.

Afterwards the books balance exactly: each order issued exactly its quota, every certificate a fixture
holds is the one recorded for its unit, retries got their unit's certificate, clones were refused,
one ledger event per decided request, no gap in the event sequence, the Merkle root recomputes, and
``fabguard audit verify`` passes on a ``fabguard ledger export``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from fabguard.fixture.client import IDEMPOTENCY_HEADER, FabGuardClientError, FixtureClient, tls_context
from fabguard.fixture.device import SimulatedDevice
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from fabguard.store.models import Unit
from tests.served import ServerProcess, fabguard_command, free_port
from tests.service.provisioning.test_quota_concurrency import (
    PlannedUnit,
    assert_gap_free_events,
    enrol_fixtures,
    new_order,
    read_books,
    set_up_catalog,
    upload_passing_tests,
    wait_for_workers,
)

FIXTURES = 64
SERVERS = 2  # ``serve --workers 2`` each: 4 server processes
WORKERS = 2
ORDERS = {"A": (60, 80), "B": (45, 64), "C": (30, 48)}  # name: (quota, units offered)
KILL_WORKER_AT = 0.15  # fractions of all requests answered
KILL_POSTGRES_AT = 0.35
POSTGRES_DOWN_S = 1.0
DEADLINE_S = 90.0
PROVISION = "/api/v1/units/provision"


# ------------------------------------------------------------------ a PostgreSQL cluster of the test's own
def postgres_binaries() -> Path | None:
    """The directory holding initdb and postgres (on PATH, or Debian's /usr/lib/postgresql/<ver>/bin)."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


class PgCluster:
    """initdb'd into a fresh directory, on a free loopback port, with PostgreSQL's default durability.

    The postmaster is a direct child of this process (not daemonised by ``pg_ctl start``): once
    SIGKILLed it must be reaped before a new one will start on the same data directory (its pid in
    ``postmaster.pid`` must be gone), and on this machine's init nothing else reaps orphans.
    """

    def __init__(self, bin_dir: Path, owner: str | None) -> None:
        self.bin_dir = bin_dir
        self.owner = owner  # run as this user (root may not run PostgreSQL)
        self.dir = Path(tempfile.mkdtemp(prefix="fabguard-torture-pg."))
        if owner:
            pw = pwd.getpwnam(owner)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.dir.chmod(0o700)
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://fabguard@127.0.0.1:{self.port}/fabguard"

    def _user(self) -> dict[str, object]:
        return {"user": self.owner, "group": pwd.getpwnam(self.owner).pw_gid, "extra_groups": []} if self.owner else {}

    def init(self) -> PgCluster:
        cmd = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "fabguard"]
        cmd += ["-E", "UTF8", "--no-locale", "--no-sync"]  # initdb's own final sync; the server runs with fsync on
        done = subprocess.run(cmd, cwd=self.dir, capture_output=True, **self._user())  # type: ignore[call-overload]
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        self.start()
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="fabguard", dbname="postgres", autocommit=True
        ) as c:
            c.execute("CREATE DATABASE fabguard")
        return self

    def start(self, timeout: float = 30.0) -> None:
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.dir), "-p", str(self.port)]
        cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        with (self.dir / "log").open("ab") as log:
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._user()
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"PostgreSQL exited with {self.proc.returncode}:\n{self.log_text()}"
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user="fabguard", dbname="postgres"):
                    return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, f"PostgreSQL did not come up in {timeout} s:\n{self.log_text()}"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its processes: no shutdown checkpoint, the restart recovers from the WAL.

        Each backend is a process group of its own (PostgreSQL calls setsid), so ``killpg`` would kill
        the postmaster alone; and an orphaned backend still attached to the shared memory stops a new
        postmaster from starting. Stopped first, the postmaster cannot fork while its children are listed.
        """
        assert self.proc is not None and self.proc.poll() is None
        postmaster = self.proc.pid
        os.kill(postmaster, signal.SIGSTOP)
        children = [pid for pid in _pids() if _parent(pid) == postmaster]
        for pid in [postmaster, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, "PostgreSQL's backends outlived SIGKILL"
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _alive(pid: int) -> bool:
    """Not gone and not a zombie (orphans are never reaped here, so a dead one may linger as Z)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def cluster_owner() -> str | None:
    """Who runs a test's own PostgreSQL: ``postgres`` when we are root (root may not), else ourselves."""
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a 'postgres' user to own the cluster (scripts/test creates one)")
    return "postgres"


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    bin_dir = postgres_binaries()
    if bin_dir is None:
        pytest.skip("initdb/postgres not found (Debian package postgresql; scripts/test installs it)")
    cluster = PgCluster(bin_dir, cluster_owner())
    try:
        yield cluster.init()
    finally:
        cluster.stop()


@pytest.fixture
def torture_instance(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Instance]:
    home = tmp_path / "home"
    init_instance(home, organization="Acme Devices", database_url=pg_cluster.url)
    inst = Instance.open(home)  # migrates before any server starts
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture
def servers(torture_instance: Instance, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """The server processes; stopped (before the cluster is) whatever happened."""
    started = [
        ServerProcess(torture_instance.home, free_port(), tmp_path / f"server-{i}.log", WORKERS) for i in range(SERVERS)
    ]
    try:
        with ThreadPoolExecutor(max_workers=SERVERS) as pool:  # their workers import and start side by side
            for f in [pool.submit(server.start, 60.0) for server in started]:
                f.result()
        yield started
    finally:
        for server in started:
            server.stop()


# ------------------------------------------------------------------ the plan: what each fixture asks, in order
@dataclass(frozen=True)
class Ask:
    """One request as the fixture means it: sent until the server decides, always with the same key."""

    order: str
    unit: PlannedUnit
    kind: str  # "first": a unit's first request; "retry": the same unit again; "clone": its key on another serial
    of: str  # the unit asked about (a clone's original)
    drop: str | None = None  # "read": the answer is not waited for; "write": the body is cut off; then sent again
    key: str = field(default_factory=lambda: str(uuid.uuid4()))


def plan(orders: dict[str, str]) -> tuple[list[list[Ask]], list[tuple[str, str]]]:
    """Each fixture's queue, orders interleaved; a retry or clone comes a few asks after its original
    on the same fixture, so its original was decided before it. Also every serial to test, with its order."""
    devices = {
        name: [SimulatedDevice(f"S{name}{i:06d}") for i in range(1, offered + 1)]
        for name, (_, offered) in ORDERS.items()
    }
    originals = []
    for i in range(max(len(d) for d in devices.values())):
        for name, devs in devices.items():
            if i < len(devs):
                originals.append((orders[name], devs[i]))
    queues: list[list[Ask]] = [[] for _ in range(FIXTURES)]
    later: list[list[Ask]] = [[] for _ in range(FIXTURES)]
    tested = []
    for n, (order, device) in enumerate(originals):
        q = n % FIXTURES
        queues[q] += later[q]
        later[q] = []
        unit = PlannedUnit(device.serial, device.csr_pem())
        drop = "read" if n % 9 == 4 else "write" if n % 17 == 8 else None
        queues[q].append(Ask(order, unit, "first", device.serial, drop))
        tested.append((order, device.serial))
        if n % 5 == 2:
            later[q].append(Ask(order, unit, "retry", device.serial, "read" if n % 3 == 0 else None))
        if n % 7 == 3:
            clone = device.clone_as(f"X{device.serial}")
            later[q].append(Ask(order, PlannedUnit(clone.serial, clone.csr_pem()), "clone", device.serial))
            tested.append((order, clone.serial))
    for q in range(FIXTURES):
        queues[q] += later[q]
    return queues, tested


# ------------------------------------------------------------------ what the fixtures saw
@dataclass(frozen=True)
class Answer:
    ask: Ask
    certificate: str | None  # issued (or replayed)
    replayed: bool
    code: str | None  # refused


@dataclass
class Line:
    answers: list[Answer] = field(default_factory=list)
    transport_errors: int = 0  # requests the SDK gave up on after its own retries (then asked again here)
    server_errors: Counter[str] = field(default_factory=Counter)  # 5xx (and in-progress) codes, asked again
    server_error_times: list[float] = field(default_factory=list)
    connections_lost: int = 0  # every transport failure, the SDK's own retries included
    dropped: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)


def drop_mid_request(server_url: str, client: FixtureClient, ask: Ask, line: Line) -> None:
    """Send the request and go away: close before the answer ("read"), or halfway through the body ("write")."""
    body = {"order_id": ask.order, "serial": ask.unit.serial, "csr": ask.unit.csr}
    if ask.drop == "read":
        timeout = httpx.Timeout(10.0, read=0.001)
        with (
            httpx.Client(base_url=server_url, verify=tls_context(client.credentials), timeout=timeout) as http,
            contextlib.suppress(httpx.TransportError),  # the read times out, the connection is closed
        ):
            http.post(PROVISION, json=body, headers={IDEMPOTENCY_HEADER: ask.key})
    else:
        payload = json.dumps(body).encode()
        head = (
            f"POST {PROVISION} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{IDEMPOTENCY_HEADER}: {ask.key}\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        port = int(server_url.rsplit(":", 1)[1])
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                tls_context(client.credentials).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(head + payload[: len(payload) // 2])
        except (OSError, ssl.SSLError):
            pass
    with line.lock:
        line.dropped[ask.drop or ""] += 1


def ask_until_decided(server_url: str, client: FixtureClient, ask: Ask, line: Line, deadline: float) -> None:
    if ask.drop:
        drop_mid_request(server_url, client, ask, line)
    while True:
        if line.stop.is_set():
            return
        try:
            issued = client.provision(ask.order, ask.unit.serial, ask.unit.csr, idempotency_key=ask.key)
        except httpx.TransportError:
            with line.lock:
                line.transport_errors += 1
        except FabGuardClientError as exc:
            if exc.status >= 500 or exc.code == "idempotency_key_in_progress":
                with line.lock:
                    line.server_errors[f"{exc.status} {exc.code}"] += 1
                    line.server_error_times.append(time.monotonic())
            else:
                with line.lock:
                    line.answers.append(Answer(ask, None, False, exc.code))
                return
        else:
            with line.lock:
                line.answers.append(Answer(ask, issued.certificate_pem, issued.replayed, None))
            return
        if time.monotonic() > deadline:
            with line.lock:
                line.unexpected.append(f"{ask.kind} {ask.unit.serial}: not decided before the deadline")
            return
        time.sleep(0.1)


class CountingTransport(httpx.HTTPTransport):
    """The SDK's transport, counting every request that failed in transit (the SDK retries some itself)."""

    def __init__(self, line: Line, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify)
        self.line = line

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            with self.line.lock:
                self.line.connections_lost += 1
            raise


def wait_for_answers(line: Line, stations: list[Future[None]], count: float, deadline: float) -> int:
    """Wait until the fixtures hold ``count`` answers (a station that died raises here); how many they hold."""
    while (n := line.count()) < count:
        assert time.monotonic() < deadline, f"only {n} answers before the deadline"
        for f in stations:
            if f.done():
                f.result()
        time.sleep(0.005)
    return n


def run_ledger_cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*fabguard_command(), "--home", str(home), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"fabguard {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ------------------------------------------------------------------ the test
@pytest.mark.postgres
@pytest.mark.slow
def test_torture_64_fixtures_4_processes_while_a_worker_postgres_and_connections_die(
    pg_cluster: PgCluster, torture_instance: Instance, servers: list[ServerProcess], tmp_path: Path
) -> None:
    inst = torture_instance
    set_up_catalog(inst)
    orders = {name: new_order(inst, quota) for name, (quota, _) in ORDERS.items()}
    quotas = {orders[name]: quota for name, (quota, _) in ORDERS.items()}
    first_workers = [wait_for_workers(s, WORKERS) for s in servers]
    took: dict[str, float] = {}
    t0 = time.monotonic()
    creds = enrol_fixtures(inst, servers[0].url, tmp_path / "fixtures", FIXTURES)
    took["enrol"] = time.monotonic() - t0
    urls = [servers[i % SERVERS].url for i in range(FIXTURES)]
    line = Line()
    clients = [
        # busy_retry_seconds=0: every 503 and in-progress answer comes back here, to be counted and resent
        FixtureClient(
            c, server=urls[i], timeout=15.0, busy_retry_seconds=0, transport=CountingTransport(line, tls_context(c))
        )
        for i, c in enumerate(creds)
    ]
    try:
        queues, tested = plan(orders)
        upload_passing_tests(clients[0], [serial for _, serial in tested])
        took["plan and tests"] = time.monotonic() - t0 - took["enrol"]
        t1 = time.monotonic()
        total = sum(len(q) for q in queues)
        deadline = time.monotonic() + DEADLINE_S

        def station(i: int) -> None:
            for ask in queues[i]:
                ask_until_decided(urls[i], clients[i], ask, line, deadline)

        def wait_for(fraction: float) -> int:
            n = wait_for_answers(line, futures, fraction * total, deadline)
            assert n < total, "the run was over before the faults"
            return n

        at: dict[str, int] = {}
        postgres_down: list[float] = []  # when it was killed, when it answered again
        with ThreadPoolExecutor(max_workers=FIXTURES) as pool:
            futures = [pool.submit(station, i) for i in range(FIXTURES)]
            try:
                at["worker killed"] = wait_for(KILL_WORKER_AT)
                os.kill(first_workers[0][0], signal.SIGKILL)  # its supervisor starts another on the same socket
                at["postgres killed"] = wait_for(KILL_POSTGRES_AT)
                postgres_down.append(time.monotonic())
                pg_cluster.kill()
                time.sleep(POSTGRES_DOWN_S)
                at["postgres restarted"] = line.count()
                pg_cluster.start()
                postgres_down.append(time.monotonic())
            except BaseException:
                line.stop.set()
                raise
            for f in futures:
                f.result()
        took["load"] = time.monotonic() - t1
        replaced = wait_for_workers(servers[0], WORKERS)
        t2 = time.monotonic()
    finally:
        for c in clients:
            c.close()

    # The servers lived through it; the killed worker was replaced, the other one kept serving.
    for server in servers:
        assert server.proc is not None and server.proc.poll() is None, server.log_text()
    assert first_workers[0][0] not in replaced and first_workers[0][1] in replaced
    assert pg_cluster.starts == 2
    pg_log = (pg_cluster.dir / "log").read_text(errors="replace")
    assert "automatic recovery in progress" in pg_log, "PostgreSQL restarted without crash recovery"
    assert line.connections_lost > 0, "no request was lost in transit (the killed worker had none in flight?)"
    assert line.server_errors, "no request met the dead database"
    # An outage is a 503 to send again, never a 500 that reads as a bug.
    outage = {"503 database_unavailable", "409 idempotency_key_in_progress"}
    assert set(line.server_errors) <= outage, dict(line.server_errors)
    # 5xx while PostgreSQL was down, and only then: once it is back, no request may fail on a dead
    # pooled connection (2 s of grace for requests that began during the outage).
    late = [round(t - postgres_down[1], 2) for t in line.server_error_times if t > postgres_down[1] + 2.0]
    early = [t for t in line.server_error_times if t < postgres_down[0]]
    assert not late and not early, f"5xx outside the outage: {len(early)} before, {late} s after it ended"
    assert not line.unexpected, line.unexpected
    assert len(line.answers) == total

    # What the fixtures were told.
    first = {a.ask.unit.serial: a for a in line.answers if a.ask.kind == "first"}
    assert len(first) == sum(offered for _, offered in ORDERS.values())
    wrong = [f"{a.ask.unit.serial}: {a.code}" for a in first.values() if a.code not in (None, "quota_exhausted")]
    assert not wrong, f"units refused for something else than the quota: {wrong}"
    issued = {s: a.certificate for s, a in first.items() if a.certificate is not None}
    for order, quota in quotas.items():
        n = sum(1 for a in first.values() if a.ask.order == order and a.certificate is not None)
        assert n == quota, f"order {order}: {n} units issued, quota {quota}"
    assert len(set(issued.values())) == len(issued), "two units were handed the same certificate"
    for a in line.answers:
        original = first[a.ask.of]
        if a.ask.kind == "retry":
            assert (a.certificate, a.code) == (original.certificate, original.code), f"retry of {a.ask.of}: {a}"
            assert a.certificate is None or a.replayed, f"retry of {a.ask.of} not marked replayed"
        elif a.ask.kind == "clone":
            # Its original was decided first: a key already certified is refused as reused; a key
            # never certified meets the spent quota (quotas never come back).
            expected = "key_reused" if original.certificate is not None else "quota_exhausted"
            assert (a.certificate, a.code) == (None, expected), f"clone of {a.ask.of}: {a}"

    # What the books say: the same, exactly.
    for order, quota in quotas.items():
        books = read_books(inst, order)  # also: no order anywhere is over its quota
        mine = {s: pem for s, pem in issued.items() if first[s].ask.order == order}
        assert books.used == quota == len(books.unit_pems)
        assert books.unit_pems == mine, (
            f"order {order}: a certificate a fixture holds differs from, or is not in, the books"
        )
        assert sorted(books.provisioned_serials) == sorted(mine), f"order {order}: one provisioned event per unit"
        # One refusal event per refused request (one Idempotency-Key), however often it was sent.
        told = Counter(a.code for a in line.answers if a.ask.order == order and a.code is not None)
        assert books.refusal_codes == told, f"order {order}: refusal events {books.refusal_codes}, answers {told}"
    with inst.db.read() as s:
        assert s.execute(select(func.count()).select_from(Unit)).scalar_one() == sum(quotas.values())
    seqs = assert_gap_free_events(inst)  # no gap, and the Merkle root recomputes from the entries

    t3 = time.monotonic()
    took["checks"] = t3 - t2
    export = tmp_path / "export"
    run_ledger_cli(inst.home, "ledger", "export", str(export))
    (tmp_path / "ledger.pub").write_text(run_ledger_cli(inst.home, "ledger", "key"))  # the key an auditor keeps
    verified = run_ledger_cli(inst.home, "audit", "verify", str(export), "--key", str(tmp_path / "ledger.pub"))
    assert f"verified: {len(seqs)} entries" in verified, verified
    took["export and verify"] = time.monotonic() - t3
    print(
        f"{total} requests from {FIXTURES} fixtures on {SERVERS}x{WORKERS} processes; faults at {at}; "
        f"{line.connections_lost} requests lost in transit ({line.transport_errors} after the SDK's retries) and "
        f"{dict(line.server_errors)} asked again; dropped on purpose {dict(line.dropped)}; "
        f"seconds: { {k: round(v, 1) for k, v in took.items()} }"
    )
