"""FabGuard beside a peer: cfssl's stateless signer and FabGuard's full transaction, same CSRs, same concurrency.

    .venv/bin/python bench/peer.py [--units N] [--clients K] [--batch B] [--cfssl-seconds S]
                                   [--time-cap S] [--database-url URL] [--profile DIR] [--no-postgres]
                                   [--driver raw|httpx] [--http httptools|h11|both] [--no-cfssl]
                                   [--field-checks N] [--field-batch B] [--field-devices D]
                                   [--field-only | --no-field]

Needs `cfssl` and `wrk` on PATH (Debian: `apt-get install golang-cfssl wrk`) and, unless
--database-url names an empty PostgreSQL database, the PostgreSQL server binaries (initdb, pg_ctl)
for a throwaway cluster on a free loopback port. It installs nothing.

One run, in this order, every figure over TLS on loopback with K concurrent clients and the same
pool of P-256 CSRs (each device's own key, subject = its serial):

1. cfssl: `cfssl serve` (a CA made for the run, P-256) signing at /api/v1/cfssl/sign, driven by
   `wrk` (K connections, keep-alive, a Lua script rotating through the CSR pool) for S seconds.
   A stateless signer: no database, no quota, no test gate, no ledger.
2. FabGuard, one unit per request: `fabguard serve` on SQLite, K fixture threads, each with its own
   client certificate (wrk cannot present one, so the driver is Python): by default raw keep-alive TLS
   sockets with pre-built requests (bench/rawdriver.py, --driver raw), or the SDK's httpx client
   (--driver httpx), which costs the load generator about 2 ms of CPU a request.
3. FabGuard, B units per request (/api/v1/units/provision-batch), same server and fixtures.
4. Field checks on the SQLite server (issue 28 item 4; bench/fielddriver.py): D devices provisioned first,
   then K field-token clients run N checks, each a challenge, the device's signature and its verdict:
   first one check per request pair (/field/challenge + /field/verify), then B per request pair
   (/field/challenges + /field/verify-batch, a device cloud's batch). Their "units" are genuine checks.
5. FabGuard on PostgreSQL, `fabguard serve --workers 2`, one unit per request, then field checks B per
   request across both processes (skipped with --no-postgres).
6. cfssl again, to bracket the FabGuard runs (the machine's load drifts).

--field-only runs cfssl, the field checks on SQLite (and PostgreSQL) and cfssl again; --no-field skips them.

--http both runs modes 2 and 3 on each HTTP stack (`serve --http h11`, then `--http httptools`), one
server per stack, turn about; --no-cfssl leaves cfssl out, for FabGuard's own A-against-B figures.

Each FabGuard mode provisions N units (every serial with an order quota and a passing test record,
uploaded before the clock starts) or stops starting requests after the time cap. Each FabGuard
figure is given as a ratio to the mean of the two cfssl figures, beside issue 14's goals.
With --profile DIR, py-spy samples the SQLite server during the one-unit-per-request run (that
figure is then taken under the profiler) and the top functions are printed; see bench/PROFILE.md.
Clients, servers and PostgreSQL share this machine's cores: the CPU columns say who used them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import fielddriver  # bench/fielddriver.py
import httpx
import rawdriver  # bench/rawdriver.py
from provision import (  # bench/provision.py
    BenchLine,
    PlannedUnit,
    RunResult,
    ServerProcess,
    bench_environment,
    bench_line,
    cpu_seconds,
    exit_on_termination,
    free_port,
    log,
    plan_units,
    provision_batched,
    provision_one_per_request,
)

INSTALL_HINT = "apt-get install golang-cfssl wrk"
SIGN_PATH = "/api/v1/cfssl/sign"
# Issue 14's goals: FabGuard's rate as a share of cfssl's.
GOALS = {"sqlite-1": 0.5, "sqlite-batch": 1.0, "pg-1": 0.5, "field": 0.25}

WRK_SCRIPT = r"""
-- Each wrk thread posts pre-built sign requests, rotating through the CSR pool from its own offset.
local threads = {}
local requests = {}
local next_request = 0
bad = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", "/api/v1/cfssl/sign", headers, line)
  end
  next_request = (id * math.floor(#requests / tonumber(args[2]))) % #requests
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"success":true', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local refused = 0
  for _, t in ipairs(threads) do refused = refused + t:get("bad") end
  local e = summary.errors
  io.write(string.format("PEER-RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), refused,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Figure:
    key: str
    label: str
    driver: str
    units: int  # units certified (requests answered with a certificate)
    requests: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    driver_cpu_s: float
    server_processes: int
    failed: int

    @property
    def units_per_s(self) -> float:
        return self.units / self.wall_s


# ------------------------------------------------------------------ tools
def find_pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


def missing_tools(need_postgres: bool) -> list[str]:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in (("cfssl", "golang-cfssl"), ("wrk", "wrk"))]
    missing = [m for m in missing if shutil.which(m.split()[0]) is None]
    if need_postgres and find_pg_bin() is None:
        missing.append("initdb/pg_ctl (Debian package postgresql), or pass --database-url")
    return missing


# ------------------------------------------------------------------ the peer: cfssl + wrk
class Cfssl:
    """`cfssl serve` with a P-256 CA made by cfssl for this run, over TLS on a free loopback port."""

    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir(parents=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = where / "config.json"
        self.config.write_text(
            json.dumps(
                {
                    "signing": {
                        # An IDevID-like leaf: 10 years, digital signature, client auth.
                        "default": {"expiry": "87600h", "usages": ["digital signature", "client auth"]},
                        "profiles": {"tls": {"expiry": "24h", "usages": ["digital signature", "server auth"]}},
                    }
                }
            )
        )
        self._gencert("ca", {"CN": "Bench Peer CA", "key": {"algo": "ecdsa", "size": 256}}, ["-initca"])
        tls_request = {"CN": "127.0.0.1", "hosts": ["127.0.0.1"], "key": {"algo": "ecdsa", "size": 256}}
        ca_args = ["-ca", str(where / "ca.pem"), "-ca-key", str(where / "ca-key.pem"), "-config", str(self.config)]
        self._gencert("tls", tls_request, [*ca_args, "-profile", "tls"])

    def _gencert(self, name: str, request: Mapping[str, object], args: list[str]) -> None:
        path = self.where / f"{name}-csr.json"
        path.write_text(json.dumps(request))
        out = subprocess.run(["cfssl", "gencert", *args, str(path)], capture_output=True, check=True).stdout
        made = json.loads(out)
        (self.where / f"{name}.pem").write_text(made["cert"])
        (self.where / f"{name}-key.pem").write_text(made["key"])
        (self.where / f"{name}-key.pem").chmod(0o600)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        w = self.where
        with (w / "cfssl.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *("cfssl", "serve", "-address", "127.0.0.1", "-port", str(self.port)),
                    *("-ca", str(w / "ca.pem"), "-ca-key", str(w / "ca-key.pem"), "-config", str(self.config)),
                    *("-tls-cert", str(w / "tls.pem"), "-tls-key", str(w / "tls-key.pem")),
                    *("-loglevel", "2"),  # warnings: no line per request (FabGuard runs without an access log)
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cfssl serve exited: {(w / 'cfssl.log').read_text()[-1000:]}")
            with suppress(httpx.TransportError), httpx.Client(verify=str(w / "ca.pem"), timeout=2) as http:
                if http.post(f"{self.url}/api/v1/cfssl/info", json={}).status_code < 500:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("cfssl serve did not answer within 20 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cfssl_figure(where: Path, label: str, bodies: Path, clients: int, seconds: int) -> Figure:
    """Start cfssl, check one signature by hand, drive it with wrk for ``seconds``, stop it."""
    peer = Cfssl(where)
    peer.start()
    try:
        with httpx.Client(verify=str(where / "ca.pem"), timeout=10) as http:
            first = http.post(f"{peer.url}{SIGN_PATH}", content=bodies.read_text().splitlines()[0]).json()
        if not first.get("success"):
            raise RuntimeError(f"cfssl refused a CSR of the pool: {first}")
        script = where / "sign.lua"
        script.write_text(WRK_SCRIPT)
        threads = min(2, clients)
        assert peer.proc is not None
        cpu0, wrk0 = cpu_seconds([peer.proc.pid]), resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(
            [
                *("wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--timeout", "10s"),
                *("-s", str(script), peer.url, "--", str(bodies), str(threads)),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        server_cpu = cpu_seconds([peer.proc.pid]) - cpu0
        wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        peer.stop()
    found = re.search(r"^PEER-RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stdout[-1500:]} {run.stderr[-1500:]}")
    requests, duration_us, p50_us, p99_us, refused, errors = map(int, found.groups())
    return Figure(
        key="cfssl",
        label=label,
        driver=f"wrk, {threads} threads, {clients} connections",
        units=requests - refused,
        requests=requests,
        wall_s=duration_us / 1e6,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        server_cpu_s=server_cpu,
        driver_cpu_s=(wrk1.ru_utime - wrk0.ru_utime) + (wrk1.ru_stime - wrk0.ru_stime),
        server_processes=1,
        failed=refused + errors,
    )


def write_sign_bodies(path: Path, units: list[PlannedUnit]) -> None:
    """One cfssl sign request (JSON) per line, one per CSR of the pool."""
    path.write_text("".join(json.dumps({"certificate_request": u.csr_pem}) + "\n" for u in units))


# ------------------------------------------------------------------ FabGuard
def fabguard_figure(
    key: str, label: str, driver: str, server: ServerProcess, run: Callable[[], RunResult]
) -> tuple[Figure, RunResult]:
    """Time one FabGuard mode; CPU of the server's process tree and of this process (the driver)."""
    processes = len(server.pids)
    cpu0, own0 = server.cpu_s(), os.times()
    result = run()
    own1 = os.times()
    figure = Figure(
        key=key,
        label=label,
        driver=driver,
        units=result.issued,
        requests=len(result.latencies_s),
        wall_s=result.wall_s,
        p50_ms=result.percentile_ms(50),
        p99_ms=result.percentile_ms(99),
        server_cpu_s=server.cpu_s() - cpu0,
        driver_cpu_s=(own1.user - own0.user) + (own1.system - own0.system),
        server_processes=processes,
        failed=result.refused.total(),
    )
    return figure, result


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """The database named by --database-url, else a throwaway cluster's."""
    if url is not None:
        yield url
        return
    where = Path(tempfile.mkdtemp(prefix="fabguard-peer-pg-"))
    try:
        with throwaway_postgres(where) as made:
            yield made
    finally:
        shutil.rmtree(where, ignore_errors=True)


@contextmanager
def throwaway_postgres(where: Path) -> Iterator[str]:
    """A PostgreSQL cluster of its own in ``where`` on a free loopback port (as scripts/test makes one)."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise RuntimeError("no initdb/pg_ctl: install Debian's postgresql, or pass --database-url")
    as_root = os.geteuid() == 0
    if as_root:  # initdb refuses to run as root: the cluster belongs to the postgres user
        shutil.chown(where, "postgres")

    def as_owner(*cmd: str) -> None:
        line = shlex.join(cmd)
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", line] if as_root else ["/bin/sh", "-c", line]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout[-800:]} {done.stderr[-800:]}")

    port = free_port()
    data = where / "data"
    as_owner(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "fabguard", "-E", "UTF8", "--no-locale")
    options = f"-k {where} -c listen_addresses=127.0.0.1 -p {port} -c max_connections=200"
    as_owner(str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(where / "log"), "-w", "start")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="fabguard", dbname="postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE fabguard_bench")
        yield f"postgresql+psycopg://fabguard@127.0.0.1:{port}/fabguard_bench"
    finally:
        with suppress(RuntimeError):
            as_owner(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


# ------------------------------------------------------------------ the profile
class Profiler:
    """`py-spy record --gil` (raw collapsed stacks of the thread holding the GIL) on a running process, plus
    one dump. The server is one process bound by the GIL: what costs is what holds it. Without ``--gil``,
    threads waiting to take the GIL back after a C call (a SQLite statement, a TLS read) are sampled in
    that call, and a cheap indexed SELECT looks like a fifth of the server's time."""

    def __init__(self, pid: int, out_dir: Path, name: str = "one-unit-sqlite") -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.raw = out_dir / f"{name}.collapsed.txt"
        self.dump = out_dir / f"{name}.dump.txt"
        self.spy, self.pid = spy, pid
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        cmd = [self.spy, "record", "--pid", str(self.pid), "--rate", "200", "--gil", "--format", "raw"]
        cmd += ["-o", str(self.raw)]
        self.proc = subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches
        threading.Timer(5.0, self._dump).start()
        return self

    def _dump(self) -> None:
        with self.dump.open("w") as out:
            subprocess.run([self.spy, "dump", "--pid", str(self.pid)], stdout=out, stderr=subprocess.STDOUT)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        _, err = self.proc.communicate(timeout=60)
        if not self.raw.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-1500:]}")


def frame_name(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (package/file.py)'."""
    found = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if found is None:
        return frame
    func, path = found.groups()
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


def summarize_profile(raw: Path, top: int = 15) -> str:
    """Top self and cumulative functions of py-spy's collapsed stacks, as a percentage of all samples."""
    self_time: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            cumulative[name] += count
    lines = [f"py-spy: {total} samples (non-idle threads), {raw}"]
    for title, table in (("self", self_time), ("cumulative", cumulative)):
        lines.append(f"\ntop {top} by {title} time")
        lines += [f"  {n / total:6.1%}  {name}" for name, n in table.most_common(top)]
    return "\n".join(lines)


# ------------------------------------------------------------------ report
def print_report(args: argparse.Namespace, figures: list[Figure], load: tuple[float, float]) -> None:
    peers = [f for f in figures if f.key == "cfssl"]
    peer_rate = sum(f.units_per_s for f in peers) / len(peers) if peers else 0.0
    print()
    print(
        f"FabGuard beside cfssl: {args.clients} concurrent clients, P-256 CSRs (one key per device), TLS on loopback; "
        f"FabGuard modes capped at {args.units} units or {args.time_cap:.0f} s"
    )
    print(
        f"host: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after; clients, servers and PostgreSQL share these cores"
    )
    print()
    header = (
        f"{'run':<40} {'units':>6} {'reqs':>6} {'wall s':>6} {'units/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'failed':>6} {'srv CPU s':>9} {'units/srv CPU s':>15} {'drv CPU s':>9}  {'vs cfssl':>8}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        ratio = f"{f.units_per_s / peer_rate:.2f}x" if f.key != "cfssl" and peer_rate else "-"
        print(
            f"{f.label:<40} {f.units:>6} {f.requests:>6} {f.wall_s:>6.1f} {f.units_per_s:>8.0f} {f.p50_ms:>7.1f} "
            f"{f.p99_ms:>7.1f} {f.failed:>6} {f.server_cpu_s:>9.1f} {f.units / max(f.server_cpu_s, 0.01):>15.0f} "
            f"{f.driver_cpu_s:>9.1f}  {ratio:>8}"
        )
    print(f"{'mean of the cfssl runs':<40} {'':>6} {'':>6} {'':>6} {peer_rate:>8.0f}")
    print()
    print("goals (issues 14 and 28), FabGuard units (field: genuine checks)/s as a share of the mean cfssl rate:")
    for f in figures:
        if f.key in GOALS and peer_rate:
            got, goal = f.units_per_s / peer_rate, GOALS[f.key]
            print(f"  {f.label:<40} {got:5.2f}x  goal >= {goal:.2f}x  {'met' if got >= goal else 'NOT met'}")
    print()
    print("drivers:")
    for f in figures:
        print(f"  {f.label:<40} {f.driver}; server processes: {f.server_processes}")
    print("latency: per HTTP request (a batched request carries several units); wrk's figures are its own")
    print("CPU: srv = the server's process tree, drv = the load generator, over the timed run; units per server")
    print("CPU second is the figure least moved by other load on the machine")


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=f"Needs cfssl and wrk: {INSTALL_HINT}",
    )
    p.add_argument("--units", type=int, default=2000, help="units per FabGuard mode (default 2000)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients in every run (default 16)")
    p.add_argument("--batch", type=int, default=50, help="units per request in the batched mode (default 50)")
    p.add_argument("--cfssl-seconds", type=int, default=10, help="seconds of each wrk run against cfssl (default 10)")
    p.add_argument("--time-cap", type=float, default=60.0, help="seconds at most per FabGuard mode (default 60)")
    p.add_argument("--workers", type=int, default=2, help="server processes on PostgreSQL (default 2)")
    p.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: a throwaway cluster)")
    p.add_argument("--profile", type=Path, default=None, help="py-spy the SQLite one-unit run; files go in this dir")
    p.add_argument(
        "--driver",
        choices=("raw", "httpx"),
        default="raw",
        help="FabGuard load driver: raw TLS sockets (lean, default) or the SDK's httpx client",
    )
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run (quick before/after on SQLite)")
    p.add_argument(
        "--http",
        choices=("httptools", "h11", "both"),
        default="httptools",
        help="the server's HTTP stack (serve --http); both: the SQLite modes on each, one server per stack, "
        "taken turn about (h11, httptools) in one run",
    )
    p.add_argument("--no-cfssl", action="store_true", help="skip cfssl (FabGuard's own figures, A against B)")
    p.add_argument("--field-checks", type=int, default=5000, help="checks per field-check mode (default 5000)")
    p.add_argument("--field-batch", type=int, default=100, help="checks per request, batched mode (default 100)")
    p.add_argument("--field-devices", type=int, default=200, help="devices answering the checks (default 200)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--field-only", action="store_true", help="only the field checks (and cfssl)")
    which.add_argument("--no-field", action="store_true", help="skip the field checks")
    args = p.parse_args(argv)
    if min(args.units, args.clients, args.cfssl_seconds, args.workers, args.field_checks, args.field_devices) < 1:
        p.error("--units, --clients, --cfssl-seconds, --workers, --field-checks and --field-devices must be positive")
    if not 1 <= args.batch <= 200 or not 1 <= args.field_batch <= 500:
        p.error("--batch 1-200, --field-batch 1-500")
    if args.database_url is not None and not args.database_url.startswith("postgresql"):
        p.error("--database-url must be a PostgreSQL URL (the several-worker run needs PostgreSQL)")
    return args


def field_figures(
    args: argparse.Namespace, line: BenchLine, site: str, prefix: str, key: str, label: str, *, single: bool
) -> Iterator[Figure]:
    """The field-check figures on ``line``'s server: one check per request pair (if ``single``), then
    ``--field-batch`` per request pair; under py-spy with --profile and --field-only."""
    devices = fielddriver.provision_devices(line, site, prefix, args.field_devices)
    token = fielddriver.field_token(line, f"bench-cloud-{prefix.lower()}")
    root = line.inst.cas.cert_path("root")
    driver = f"Python httpx, {args.clients} field-token threads, keep-alive, {args.field_devices} devices"
    runs = ([1] if single else []) + ([args.field_batch] if args.field_batch > 1 or not single else [])
    for batch in runs:
        checks = min(args.field_checks, 1000) if batch == 1 and runs != [1] else args.field_checks

        def run(batch: int = batch, checks: int = checks) -> RunResult:
            return fielddriver.check_devices(
                line.server.url, root, token, devices, checks=checks, clients=args.clients, batch=batch,
                time_cap_s=args.time_cap,
            )  # fmt: skip

        log(f"{label}: field checks, {batch} per request")
        name = f"{label}, field checks {batch}/req"
        if args.profile is not None and args.field_only and batch == runs[-1] and line.server.proc is not None:
            with Profiler(line.server.proc.pid, args.profile, f"field-{prefix.lower()}") as profiler:
                fig, _ = fabguard_figure(key if batch > 1 else f"{key}-1", name + " (py-spy)", driver, line.server, run)
            yield fig
            print(summarize_profile(profiler.raw), file=sys.stderr)
        else:
            fig, _ = fabguard_figure(key if batch > 1 else f"{key}-1", name, driver, line.server, run)
            yield fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools(need_postgres=args.database_url is None and not args.no_postgres)
    if args.no_cfssl:
        missing = [m for m in missing if m not in ("cfssl", "wrk")]
    if missing:
        print(f"bench/peer.py needs: {', '.join(missing)}. Install with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    bench_environment()
    run_id = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix="fabguard-peer-"))
    load_before = os.getloadavg()[0]
    figures: list[Figure] = []
    profile_text = ""
    provisioning = not args.field_only
    field = not args.no_field
    try:
        with exit_on_termination():
            n_stacks = 2 if args.http == "both" else 1
            units = args.units if provisioning else 1
            log(f"generating {(2 * n_stacks + 1) * units} device keys and CSRs")
            sqlite_units = [
                [plan_units(f"P{run_id}{k}S", units), plan_units(f"P{run_id}{k}B", units)] for k in range(n_stacks)
            ]
            pg_units = plan_units(f"P{run_id}G", units)
            bodies = tmp / "sign-bodies.jsonl"
            write_sign_bodies(bodies, [u for pair in sqlite_units for units in pair for u in units] + pg_units)

            if not args.no_cfssl:
                log(f"cfssl, {args.cfssl_seconds} s of wrk")
                figures.append(
                    cfssl_figure(tmp / "cfssl-1", "cfssl serve (first)", bodies, args.clients, args.cfssl_seconds)
                )

            if args.driver == "raw":
                driver = f"raw TLS sockets, {args.clients} fixture threads, mTLS, keep-alive (bench/rawdriver.py)"
            else:
                driver = f"Python httpx (the SDK), {args.clients} fixture threads, mTLS, keep-alive"

            def one_per_request(line: BenchLine, order: str, units: list[PlannedUnit]) -> RunResult:
                if args.driver == "raw":
                    creds = [c.credentials for c in line.clients]
                    return rawdriver.provision_one_per_request(creds, order, units, cap)
                return provision_one_per_request(line.clients, order, units, cap)

            def batched(line: BenchLine, order: str, units: list[PlannedUnit]) -> RunResult:
                if args.driver == "raw":
                    creds = [c.credentials for c in line.clients]
                    return rawdriver.provision_batched(creds, order, units, args.batch, cap)
                return provision_batched(line.clients, order, units, args.batch, cap)

            cap = args.time_cap
            site = f"cm-{run_id}"
            stacks = ("h11", "httptools") if args.http == "both" else (args.http,)
            with ExitStack() as lines:
                # One SQLite server per stack, each with its own units; the modes alternate between them so
                # the machine's drifting load falls on both alike.
                runs = {
                    stack: (
                        lines.enter_context(
                            bench_line(tmp / f"sqlite-{stack}", run_id, planned, clients=args.clients, http=stack)
                        ),
                        planned,
                    )
                    for stack, planned in zip(stacks, sqlite_units, strict=True)
                }
                for stack, (line, (single, _)) in runs.items() if provisioning else ():
                    order_1 = line.order_ids[0]
                    sqlite_server = line.server

                    def one_unit(
                        line: BenchLine = line, order_1: str = order_1, single: list[PlannedUnit] = single
                    ) -> RunResult:
                        return one_per_request(line, order_1, single)

                    log(f"FabGuard on SQLite ({stack}), one unit per request")
                    label = f"FabGuard SQLite {stack}, 1 unit/request"
                    if args.profile is None or stack != stacks[-1]:
                        fig, run = fabguard_figure("sqlite-1", label, driver, sqlite_server, one_unit)
                    else:
                        assert sqlite_server.proc is not None
                        with Profiler(sqlite_server.proc.pid, args.profile) as profiler:
                            fig, run = fabguard_figure("sqlite-1", label + " (py-spy)", driver, sqlite_server, one_unit)
                        profile_text = summarize_profile(profiler.raw)
                    figures.append(fig)
                    line.check_used(order_1, run)

                def batch_run(line: BenchLine, order_b: str, batch: list[PlannedUnit]) -> RunResult:
                    return batched(line, order_b, batch)

                for stack, (line, (_, batch)) in runs.items() if provisioning else ():
                    order_b = line.order_ids[1]
                    log(f"FabGuard on SQLite ({stack}), {args.batch} units per request")
                    label = f"FabGuard SQLite {stack}, {args.batch} units/request"
                    work = partial(batch_run, line, order_b, batch)
                    if args.profile is None or stack != stacks[-1]:
                        fig, run = fabguard_figure("sqlite-batch", label, driver, line.server, work)
                    else:  # the batched mode is profiled too (issue 28: what is on top at 50 per request)
                        assert line.server.proc is not None
                        with Profiler(line.server.proc.pid, args.profile, "batch-sqlite") as profiler:
                            fig, run = fabguard_figure("sqlite-batch", label + " (py-spy)", driver, line.server, work)
                        profile_text += "\n\n" + summarize_profile(profiler.raw)
                    figures.append(fig)
                    line.check_used(order_b, run)
                if field:  # on the last stack's server (the default one)
                    line = runs[stacks[-1]][0]
                    figures += field_figures(args, line, site, f"F{run_id}S", "field", "FabGuard SQLite", single=True)

            if not args.no_postgres:
                with (
                    postgres_database(args.database_url) as url,
                    bench_line(
                        tmp / "pg", run_id, [pg_units], clients=args.clients, database_url=url, workers=args.workers
                    ) as line,
                ):
                    (order_g,) = line.order_ids
                    if provisioning:
                        log(
                            f"FabGuard on PostgreSQL, --workers {args.workers} "
                            f"({len(line.server.pids)} server process(es))"
                        )
                        fig, run = fabguard_figure(
                            "pg-1",
                            f"FabGuard PostgreSQL, --workers {args.workers}, 1/req",
                            driver,
                            line.server,
                            lambda: one_per_request(line, order_g, pg_units),
                        )
                        figures.append(fig)
                        line.check_used(order_g, run)
                    if field:
                        label = f"FabGuard PostgreSQL --workers {args.workers}"
                        figures += field_figures(args, line, site, f"F{run_id}G", "pg-field", label, single=False)

            if not args.no_cfssl:
                log(f"cfssl again, {args.cfssl_seconds} s of wrk")
                figures.append(
                    cfssl_figure(tmp / "cfssl-2", "cfssl serve (again)", bodies, args.clients, args.cfssl_seconds)
                )
            print_report(args, figures, (load_before, os.getloadavg()[0]))
            if profile_text:
                print()
                print(profile_text)
            return 0 if all(f.failed == 0 for f in figures) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
