"""A lean load driver for the provisioning bench: one keep-alive mutual-TLS socket per fixture, no httpx.

bench/PROFILE.md found the httpx driver spending about 2 ms of CPU per request, which at the goal rate
would take most of this machine's cores from the server it measures (wrk, at 0.07 ms a request, cannot
present a client certificate). This driver does what a fixture's HTTP client must and nothing more: a
TLS socket with the fixture's certificate (the SDK's own `tls_context`), HTTP/1.1 keep-alive, a request
built from bytes, the answer read by Content-Length. Every request still carries its own
Idempotency-Key, as the SDK sends one, so the server does the same work as for a real fixture.

Used by bench/peer.py (``--driver raw``, the default); not part of the product.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from provision import PlannedUnit, RunResult, run_concurrently  # bench/provision.py

from fabguard.fixture.client import IDEMPOTENCY_HEADER, Credentials, tls_context


class DriverError(RuntimeError):
    """The server closed the connection or answered something that is not HTTP/1.1."""


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.body)
        return loaded


class RawConnection:
    """One fixture's keep-alive HTTPS connection; reconnects when the server closed it between requests."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        parts = urlsplit(credentials.server)
        if parts.scheme != "https" or parts.hostname is None:
            raise ValueError(f"the raw driver speaks HTTPS only, not {credentials.server}")
        self.host, self.port = parts.hostname, parts.port or 443
        self.authority = f"{self.host}:{self.port}".encode()
        self.context: ssl.SSLContext = tls_context(credentials)
        self.timeout = timeout
        self._sock: ssl.SSLSocket | None = None
        self._buffer = b""

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        return self.context.wrap_socket(raw, server_hostname=self.host)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def post_json(self, path: str, body: bytes) -> Answer:
        """POST a JSON body; one retry on a fresh connection if the kept-alive one was closed under us."""
        request = b"".join(
            (
                b"POST ", path.encode(), b" HTTP/1.1\r\nHost: ", self.authority,
                b"\r\nContent-Type: application/json\r\nContent-Length: ", str(len(body)).encode(),
                b"\r\n", IDEMPOTENCY_HEADER.encode(), b": ", str(uuid.uuid4()).encode(), b"\r\n\r\n", body,
            )
        )  # fmt: skip
        fresh = self._sock is None
        for attempt in (0, 1):
            if self._sock is None:
                self._sock = self._connect()
                fresh = True
            try:
                self._sock.sendall(request)
                return self._read_answer()
            except (DriverError, OSError):
                self.close()
                if fresh or attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise DriverError("the server closed the connection")
        self._buffer += chunk

    def _read_answer(self) -> Answer:
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise DriverError(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
        status = int(rest[:3])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" not in headers:
            raise DriverError("the answer has no Content-Length (chunked answers are not expected here)")
        length = int(headers[b"content-length"])
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return Answer(status, body)


def provision_one_per_request(
    credentials: list[Credentials], order_id: str, units: list[PlannedUnit], time_cap_s: float | None = None
) -> RunResult:
    """POST /api/v1/units/provision, one unit a request, one keep-alive connection per fixture."""
    result = RunResult("1 unit / request (raw driver)", len(units), 0.0)
    lock = threading.Lock()
    bodies = {
        u.serial: json.dumps({"order_id": order_id, "serial": u.serial, "csr": u.csr_pem}).encode() for u in units
    }

    def call(conn: RawConnection, job: list[PlannedUnit]) -> None:
        (unit,) = job
        t0 = time.perf_counter()
        answer = conn.post_json("/api/v1/units/provision", bodies[unit.serial])
        elapsed = time.perf_counter() - t0
        outcome = None if answer.status in (200, 201) else _code(answer)
        with lock:
            result.latencies_s.append(elapsed)
            if outcome is None:
                result.issued += 1
            else:
                result.refused[outcome] += 1

    connections = [RawConnection(c) for c in credentials]
    try:
        result.wall_s = run_concurrently(connections, [[u] for u in units], call, time_cap_s)
    finally:
        for conn in connections:
            conn.close()
    result.units = result.issued + result.refused.total()
    return result


def provision_batched(
    credentials: list[Credentials],
    order_id: str,
    units: list[PlannedUnit],
    batch: int,
    time_cap_s: float | None = None,
) -> RunResult:
    """POST /api/v1/units/provision-batch, ``batch`` units a request."""
    result = RunResult(f"{batch} units / request (raw driver)", len(units), 0.0)
    lock = threading.Lock()
    jobs = [units[i : i + batch] for i in range(0, len(units), batch)]
    bodies = {
        job[0].serial: json.dumps(
            {"order_id": order_id, "units": [{"serial": u.serial, "csr": u.csr_pem} for u in job]}
        ).encode()
        for job in jobs
    }

    def call(conn: RawConnection, job: list[PlannedUnit]) -> None:
        t0 = time.perf_counter()
        answer = conn.post_json("/api/v1/units/provision-batch", bodies[job[0].serial])
        elapsed = time.perf_counter() - t0
        if answer.status != 200:
            raise DriverError(f"batch answered {answer.status}: {answer.body[:200]!r}")
        results = answer.json()["results"]
        assert isinstance(results, list)
        with lock:
            result.latencies_s.append(elapsed)
            for one in results:
                if one["status"] == "issued":
                    result.issued += 1
                else:
                    result.refused[one["error"]["code"]] += 1

    connections = [RawConnection(c) for c in credentials]
    try:
        result.wall_s = run_concurrently(connections, jobs, call, time_cap_s)
    finally:
        for conn in connections:
            conn.close()
    result.units = result.issued + result.refused.total()
    return result


def _code(answer: Answer) -> str:
    try:
        error = answer.json()["error"]
        assert isinstance(error, dict)
        return str(error["code"])
    except (ValueError, KeyError, AssertionError, TypeError):
        return f"http_{answer.status}"
