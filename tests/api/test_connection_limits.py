"""Exhaustion without a flood: a server bounds its connections, resets the ones over the bound at once, and logs
what repeats (refusals, accept errors) once per interval with a count, never a traceback per connection.

In this process with a small bound, then ``fabguard serve`` as a real process under a low open-file limit
(``RLIMIT_NOFILE`` 256) facing a few hundred idle connections, on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fabguard.api.connections import OpenConnections, RepeatedLog, connection_limit
from fabguard.api.server import STACKS, ServerThread
from fabguard.service.core.instance import Instance
from fabguard.service.core.seeding import init_instance
from tests.support import new_instance

FABGUARD = (sys.executable, "-m", "fabguard.cli.main")
NOFILE = 256


def test_a_repeated_message_is_let_through_once_then_counted_once_per_interval() -> None:
    now = [0.0]
    scheduled: list[tuple[float, Callable[[], None]]] = []
    repeated = RepeatedLog(lambda delay, fn: scheduled.append((delay, fn)), interval=10, clock=lambda: now[0])
    assert repeated.admit("accept failed") is True
    assert [repeated.admit("accept failed") for _ in range(500)] == [False] * 500
    assert repeated.admit("refused") is True  # another kind has its own interval
    assert len(scheduled) == 1 and scheduled[0][0] == 10  # one report for the whole interval
    with _captured("fabguard.api.connections") as records:
        scheduled[0][1]()
    assert records == ["accept failed: 500 more in the last 10 s"]
    now[0] = 10.0
    assert repeated.admit("accept failed") is True


@contextlib.contextmanager
def _captured(name: str) -> Iterator[list[str]]:
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger, handler = logging.getLogger(name), Keep()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_the_bound_leaves_room_for_the_rest_of_the_process_within_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_limit(10) == min(10, soft - min(256, soft // 2))
    assert connection_limit(10**9) < soft


def _idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that say nothing (a TLS client that never starts its handshake)."""
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.append(s)
    return held


def _reset_at_once(port: int) -> bool:
    """Whether the server drops a new connection at once (reset or closed before any answer). The reset
    can come so soon that the connect itself reports it: that is dropped at once too."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _health(url: str, root: Path, timeout: float = 5) -> int | str:
    try:
        return httpx.get(
            f"{url}/api/v1/health", verify=ssl.create_default_context(cafile=str(root)), timeout=timeout
        ).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


@pytest.fixture(params=STACKS)
def bounded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, Instance]]:
    """A server with a bound of 5 connections, on each HTTP stack (uvloop accepts through its own wrapper)."""
    inst = new_instance(tmp_path / "home")
    try:
        with ServerThread(inst, connections=OpenConnections(5), http=request.param) as srv:
            yield srv, inst
    finally:
        inst.close()


def test_connections_over_the_bound_are_reset_at_once_and_a_freed_place_serves_again(
    bounded: tuple[ServerThread, Instance],
) -> None:
    srv, inst = bounded
    root = inst.cas.cert_path("root")
    held = _idle(srv.port, 5)
    try:
        time.sleep(0.2)
        started = time.monotonic()
        assert _reset_at_once(srv.port)
        assert time.monotonic() - started < 2
        held.pop().close()
        deadline = time.monotonic() + 10
        while _health(srv.url, root) != 200:
            assert time.monotonic() < deadline, "a freed place did not serve again"
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture(params=STACKS)
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], str, Path, Path]]:
    home, port = tmp_path / "home", _free_port()
    init_instance(home, organization="Acme", public_url=f"https://127.0.0.1:{port}")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                *FABGUARD,
                "--home",
                str(home),
                "serve",
                "--port",
                str(port),
                "--log-level",
                "info",
                "--http",
                request.param,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_low_nofile,
            env={**os.environ, "NO_COLOR": "1"},
        )
    url, root = f"https://127.0.0.1:{port}", home / "ca" / "root.pem"
    try:
        deadline = time.monotonic() + 60
        while _health(url, root, 2) != 200:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield server, url, root, log
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()


@pytest.mark.slow
def test_a_few_hundred_idle_connections_under_a_low_open_file_limit_leave_a_short_log_and_a_live_server(
    served: tuple[subprocess.Popen[bytes], str, Path, Path],
) -> None:
    server, url, root, log = served
    port = int(url.rsplit(":", 1)[1])
    before = len(_log_lines(log))
    # Below the bound (half of 256 is kept for the process), health checks are answered while they are open.
    fewer = _idle(port, 60)
    try:
        for _ in range(3):
            started = time.monotonic()
            assert _health(url, root) == 200
            assert time.monotonic() - started < 2
    finally:
        for s in fewer:
            s.close()
    # Over it: the rest are reset at once, the log says so once (and counts the others), nothing stalls.
    held: list[socket.socket] = []
    try:
        for _ in range(400):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                continue
        started = time.monotonic()
        assert _reset_at_once(port)
        assert time.monotonic() - started < 2
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 20
    while _health(url, root) != 200:
        assert time.monotonic() < deadline, "the server did not answer again once the idle connections closed"
        time.sleep(0.2)
    assert server.poll() is None
    lines = _log_lines(log)[before:]
    text = "\n".join(lines)
    assert "Traceback" not in text and "out of system resource" not in text, text[:2000]
    assert sum("refused a connection" in line for line in lines) == 1, text[:2000]
    assert len(lines) < 20, text[:2000]


@pytest.mark.slow
def test_accept_failing_for_want_of_descriptors_is_logged_once_an_interval_with_a_count_and_no_traceback(
    served: tuple[subprocess.Popen[bytes], str, Path, Path],
) -> None:
    server, url, root, log = served
    port = int(url.rsplit(":", 1)[1])
    before = len(_log_lines(log))
    in_use = len(os.listdir(f"/proc/{server.pid}/fd"))
    # Lower the running server's limit below its own bound, so accept() itself runs out (EMFILE).
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (in_use + 8, NOFILE))
    held: list[socket.socket] = []
    try:
        for _ in range(200):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                continue
        time.sleep(3)  # about three of asyncio's one-second accept retries
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        for s in held:
            s.close()
    deadline = time.monotonic() + 30
    while _health(url, root) != 200:
        assert time.monotonic() < deadline, "the server did not answer again"
        time.sleep(0.2)
    lines = _log_lines(log)[before:]
    text = "\n".join(lines)
    assert sum("out of system resource" in line for line in lines) in (1, 2), text[:3000]
    assert "Too many open files" in text
    assert "Traceback" not in text, text[:3000]
    assert len(lines) < 20, text[:3000]
