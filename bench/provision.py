"""Provisioning throughput of the real server over mutual TLS, beside a crypto-only baseline.

    .venv/bin/python bench/provision.py [--units N] [--clients K] [--batch B] [--database-url URL]

A temporary instance gets one product, one site and two orders of N units each; K fixtures enrol
over HTTPS. Test records for every serial are uploaded and the device keys and CSRs generated before
any clock starts. The server runs in its own process (uvicorn, the real app, TLS with client
certificates). Two timed runs follow: one unit per request from K client threads, then B units per
request. The baseline is what the same CSRs cost in this process with no server at all: the CSR
signature check plus signing the IDevID. Clients and server share this machine's cores, so the
figures are for the whole loop, not the server alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fabguard.domain.values import FixtureId, ProductId, Serial, SiteId
from fabguard.fixture.client import Credentials, FabGuardClientError, FixtureClient, enroll
from fabguard.fixture.device import SimulatedDevice
from fabguard.fixture.openhtf_records import openhtf_record
from fabguard.pki import profiles
from fabguard.pki.keys import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.core.config import DATABASE_ENV, HOME_ENV
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance

ORGANIZATION = "Bench Devices"
# The bench's own throwaway instance: this passphrase protects keys that are deleted at exit.
BENCH_PASSPHRASE = "bench-passphrase-not-a-secret"
UPLOAD_BATCH = 200  # Limits.max_batch_records
# Set when the run is interrupted or fails: client threads stop after their request in flight.
STOP = threading.Event()

# Run in the child process: `fabguard serve` itself (the production entry point, its GC tuning and
# --workers included), plus a watchdog that ends it if the bench dies without stopping it.
SERVER_CODE = """
import os, sys, threading, time

parent = os.getppid()


def exit_when_orphaned():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


threading.Thread(target=exit_when_orphaned, daemon=True).start()
from fabguard.cli.main import main

sys.argv = ["fabguard", "serve", *sys.argv[1:]]
main()
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PlannedUnit:
    serial: str
    csr_pem: str


@dataclass
class RunResult:
    mode: str
    units: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    issued: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def units_per_s(self) -> float:
        return self.units / self.wall_s

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies_s) / len(self.latencies_s) * 1000

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the per-request latencies, in milliseconds."""
        ordered = sorted(self.latencies_s)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000


# ------------------------------------------------------------------ the server process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """pid and its live descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; gone processes count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


class ServerProcess:
    """``fabguard serve --workers N`` in its own process, on a free loopback port."""

    def __init__(self, home: Path, log_path: Path, workers: int = 1, http: str = "httptools") -> None:
        self.home = home
        self.port = free_port()
        self.log_path = log_path
        self.workers = workers
        self.http = http  # serve --http: httptools (uvloop) or h11
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pids(self) -> list[int]:
        """The server's processes: the one started and any workers it forked."""
        return [] if self.proc is None else process_tree(self.proc.pid)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pids)

    @property
    def serve_args(self) -> list[str]:
        return ["--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning", "--http", self.http]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER_CODE, *self.serve_args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, HOME_ENV: str(self.home)},
            )
        ctx = ssl.create_default_context(cafile=str(self.home / "ca" / "root.pem"))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}")
            with suppress(httpx.TransportError), httpx.Client(verify=ctx, timeout=2.0) as http:
                if http.get(f"{self.url}/api/v1/health").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /api/v1/health within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


# ------------------------------------------------------------------ setting up (not timed)
def plan_units(prefix: str, count: int) -> list[PlannedUnit]:
    """Each device makes its own key and CSR, as on the line."""
    return [PlannedUnit(s, SimulatedDevice(s).csr_pem()) for s in (f"{prefix}{i:07d}" for i in range(1, count + 1))]


def enrol_fixtures(inst: Instance, url: str, site: str, where: Path, count: int, run_id: str) -> list[Credentials]:
    creds = []
    for i in range(count):
        _, token = fixtures.create_fixture(
            inst, fixture_id=FixtureId(f"fx-{run_id}-{i:02d}"), site_id=SiteId(site), actor="bench"
        )
        creds.append(enroll(url, token, where / f"fx-{i:02d}", ca_file=inst.cas.cert_path("root")))
    return creds


def upload_passing_tests(clients: list[FixtureClient], serials: list[str]) -> None:
    batches = [serials[i : i + UPLOAD_BATCH] for i in range(0, len(serials), UPLOAD_BATCH)]

    def upload(n: int, batch: list[str]) -> None:
        if STOP.is_set():
            return
        client = clients[n % len(clients)]
        rng = random.Random(n)
        records = [openhtf_record(s, client.credentials.fixture_id, fail=False, rng=rng) for s in batch]
        results = client.upload_test_records(records)
        refused = [r for r in results if r["status"] != "stored"]
        if refused:
            raise RuntimeError(f"test records refused: {refused[:3]}")

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        try:
            for f in [pool.submit(upload, n, b) for n, b in enumerate(batches)]:
                f.result()
        except BaseException:
            STOP.set()
            raise


# ------------------------------------------------------------------ timed runs
C = TypeVar("C")  # whatever a worker thread sends its requests through


def run_concurrently(
    clients: Sequence[C],
    jobs: list[list[PlannedUnit]],
    call: Callable[[C, list[PlannedUnit]], None],
    time_cap_s: float | None = None,
) -> float:
    """Hand the jobs round-robin to one thread per client (an SDK client, or a raw connection of
    bench/rawdriver.py), release them together, return the wall time.

    With a time cap, no client starts a request after that many seconds (the ones in flight finish)."""
    shares = [jobs[i :: len(clients)] for i in range(len(clients))]
    released: list[float] = []
    barrier = threading.Barrier(len(clients) + 1, action=lambda: released.append(time.perf_counter()))

    def work(i: int) -> None:
        barrier.wait(timeout=60)
        deadline = released[0] + time_cap_s if time_cap_s is not None else float("inf")
        for job in shares[i]:
            if STOP.is_set() or time.perf_counter() > deadline:
                return
            call(clients[i], job)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        futures = [pool.submit(work, i) for i in range(len(clients))]
        try:
            barrier.wait(timeout=60)
            start = released[0]
            for f in futures:
                f.result()
        except BaseException:
            # Interrupted or failed: let the workers finish their request in flight and stop.
            STOP.set()
            barrier.abort()
            raise
        return time.perf_counter() - start


def provision_one_per_request(
    clients: list[FixtureClient], order_id: str, units: list[PlannedUnit], time_cap_s: float | None = None
) -> RunResult:
    result = RunResult("1 unit / request", len(units), 0.0)
    lock = threading.Lock()

    def call(client: FixtureClient, job: list[PlannedUnit]) -> None:
        (unit,) = job
        t0 = time.perf_counter()
        try:
            client.provision(order_id, unit.serial, unit.csr_pem)
        except FabGuardClientError as exc:
            outcome: str | None = exc.code
        else:
            outcome = None
        elapsed = time.perf_counter() - t0
        with lock:
            result.latencies_s.append(elapsed)
            if outcome is None:
                result.issued += 1
            else:
                result.refused[outcome] += 1

    result.wall_s = run_concurrently(clients, [[u] for u in units], call, time_cap_s)
    result.units = result.issued + result.refused.total()
    return result


def provision_batched(
    clients: list[FixtureClient],
    order_id: str,
    units: list[PlannedUnit],
    batch: int,
    time_cap_s: float | None = None,
) -> RunResult:
    result = RunResult(f"{batch} units / request", len(units), 0.0)
    lock = threading.Lock()

    def call(client: FixtureClient, job: list[PlannedUnit]) -> None:
        t0 = time.perf_counter()
        answers = client.provision_batch(order_id, [(u.serial, u.csr_pem) for u in job])
        elapsed = time.perf_counter() - t0
        with lock:
            result.latencies_s.append(elapsed)
            for answer in answers:
                if answer["status"] == "issued":
                    result.issued += 1
                else:
                    result.refused[answer["error"]["code"]] += 1

    jobs = [units[i : i + batch] for i in range(0, len(units), batch)]
    result.wall_s = run_concurrently(clients, jobs, call, time_cap_s)
    result.units = result.issued + result.refused.total()
    return result


def crypto_baseline(inst: Instance, product_id: str, units: list[PlannedUnit]) -> RunResult:
    """The cryptographic floor of issuance in this process: verify each CSR's signature, sign an IDevID."""
    issuer = inst.cas.issuer("issuing")
    csrs = [(Serial(u.serial), x509.load_pem_x509_csr(u.csr_pem.encode())) for u in units]
    now = datetime.now(UTC)
    start = time.perf_counter()
    for serial, csr in csrs:
        if not csr.is_signature_valid:
            raise RuntimeError(f"CSR of {serial} does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise RuntimeError(f"CSR of {serial} is not for an EC key")
        profiles.idevid_certificate(issuer, public_key, serial, ORGANIZATION, product_id, now)
    return RunResult("crypto-only baseline", len(units), time.perf_counter() - start, issued=len(units))


# ------------------------------------------------------------------ report
def print_report(args: argparse.Namespace, engine: str, runs: list[RunResult], baseline: RunResult) -> None:
    print()
    print(
        f"FabGuard provisioning benchmark: {args.units} units per mode, {args.clients} fixtures (client threads), "
        f"engine {engine}"
    )
    print(
        f"host: {os.cpu_count()} cores, Python {platform.python_version()}; "
        "clients, server and baseline share these cores"
    )
    print()
    header = (
        f"{'mode':<28} {'units':>6} {'requests':>8} {'wall s':>7} {'units/s':>8} "
        f"{'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'issued':>6}  {'vs baseline':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        print(
            f"{'server, ' + r.mode:<28} {r.units:>6} {len(r.latencies_s):>8} {r.wall_s:>7.2f} {r.units_per_s:>8.0f} "
            f"{r.mean_ms:>8.1f} {r.percentile_ms(50):>8.1f} {r.percentile_ms(99):>8.1f} {r.issued:>6}  "
            f"{r.units_per_s / baseline.units_per_s:>10.1%}"
        )
    print(
        f"{baseline.mode:<28} {baseline.units:>6} {'-':>8} {baseline.wall_s:>7.2f} {baseline.units_per_s:>8.0f} "
        f"{'-':>8} {'-':>8} {'-':>8} {baseline.issued:>6}  {'100.0%':>11}"
    )
    for r in runs:
        if r.refused:
            print(f"refused in '{r.mode}': {dict(r.refused)}")
    print()
    print("baseline: CSR signature check + IDevID signing (P-256), one thread, no parsing, no database, no HTTP")
    print("latency: per HTTP request (a batched request carries several units)")


# ------------------------------------------------------------------ main
@contextmanager
def exit_on_termination() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so the clean-up below runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        STOP.set()
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--units", type=int, default=2000, help="units provisioned in each mode (default 2000)")
    p.add_argument("--clients", type=int, default=16, help="concurrent fixtures, one thread each (default 16)")
    p.add_argument("--batch", type=int, default=50, help="units per request in the batched mode (default 50)")
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of an empty database (default: SQLite in the temporary instance)",
    )
    args = p.parse_args(argv)
    if args.units < 1 or args.clients < 1 or not 1 <= args.batch <= 200:
        p.error("--units and --clients must be positive; --batch must be 1-200 (the server's batch limit)")
    return args


@dataclass
class BenchLine:
    """A running bench instance: its server process, enrolled fixtures and one order per unit list."""

    inst: Instance
    server: ServerProcess
    clients: list[FixtureClient]
    product: str
    order_ids: list[str]

    @property
    def engine(self) -> str:
        return self.inst.db.url.get_backend_name()

    def check_used(self, order_id: str, run: RunResult) -> None:
        """The order's count of used units must be what the clients saw issued."""
        used = orders.get_order(self.inst, order_id).used
        if used != run.issued:
            raise RuntimeError(f"order {order_id} used {used} units but clients saw {run.issued} issued")


def bench_environment() -> None:
    """The bench's passphrase, and no database URL inherited from the caller's environment."""
    os.environ[PASSPHRASE_ENV] = BENCH_PASSPHRASE
    os.environ.pop(PASSPHRASE_FILE_ENV, None)
    os.environ.pop(DATABASE_ENV, None)


@contextmanager
def bench_line(
    where: Path,
    run_id: str,
    unit_lists: list[list[PlannedUnit]],
    *,
    clients: int,
    database_url: str | None = None,
    workers: int = 1,
    http: str = "httptools",
) -> Iterator[BenchLine]:
    """Create an instance in ``where``, one order per unit list (quota = its length), start the server,
    enrol the fixtures and upload a passing test record for every unit: nothing of this is timed."""
    inst: Instance | None = None
    server: ServerProcess | None = None
    sessions: list[FixtureClient] = []
    failed = True
    try:
        home = where / "home"
        log("creating the instance")
        init_instance(home, organization=ORGANIZATION, database_url=database_url)
        inst = Instance.open(home)
        product, site = f"bench-{run_id}", f"cm-{run_id}"
        product_catalog.create_product(inst, product_id=ProductId(product), name="Bench sensor", actor="bench")
        product_catalog.create_site(inst, site_id=SiteId(site), name="Bench CM", actor="bench")
        order_ids = [
            orders.create_order(
                inst, product_id=ProductId(product), site_id=SiteId(site), quota=len(units), actor="bench"
            ).id
            for units in unit_lists
        ]
        log(f"starting the server process (--workers {workers})")
        server = ServerProcess(home, where / "server.log", workers=workers, http=http)
        server.start()
        log(f"enrolling {clients} fixtures at {server.url}")
        creds = enrol_fixtures(inst, server.url, site, where / "fixtures", clients, run_id)
        sessions = [FixtureClient(c) for c in creds]
        serials = [u.serial for units in unit_lists for u in units]
        log(f"uploading {len(serials)} passing test records")
        upload_passing_tests(sessions, serials)
        yield BenchLine(inst, server, sessions, product, order_ids)
        failed = False
    finally:
        for c in sessions:
            c.close()
        if server is not None:
            if failed:
                print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
            server.stop()
        if inst is not None:
            inst.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_environment()
    run_id = secrets.token_hex(3)  # ids stay unique if a PostgreSQL database is reused
    tmp = Path(tempfile.mkdtemp(prefix="fabguard-bench-"))
    try:
        with exit_on_termination():
            log(f"generating {2 * args.units} device keys and CSRs")
            single_units = plan_units(f"B{run_id}S", args.units)
            batch_units = plan_units(f"B{run_id}B", args.units)
            with bench_line(
                tmp, run_id, [single_units, batch_units], clients=args.clients, database_url=args.database_url
            ) as line:
                single_order, batch_order = line.order_ids
                log(f"provisioning {args.units} units, one per request, {args.clients} clients")
                single = provision_one_per_request(line.clients, single_order, single_units)
                log(f"provisioning {args.units} units, {args.batch} per request, {args.clients} clients")
                batched = provision_batched(line.clients, batch_order, batch_units, args.batch)
                log(f"crypto-only baseline over {args.units} CSRs")
                baseline = crypto_baseline(line.inst, line.product, single_units)
                line.check_used(single_order, single)
                line.check_used(batch_order, batched)
                print_report(args, line.engine, [single, batched], baseline)
            return 0 if single.issued == batched.issued == args.units else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
