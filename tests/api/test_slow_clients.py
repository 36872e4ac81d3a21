"""Slow and oversized clients over a real TLS socket: they get a JSON error with a declared code, or are closed,
on both HTTP stacks (httptools on uvloop, h11 on asyncio).

The limits are set low on the instance (``Limits``) so each case takes about a second.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabguard.api.server import STACKS, ServerThread
from fabguard.domain.errors import ERROR_STATUS
from fabguard.service.access import tokens
from fabguard.service.core.instance import Instance
from tests.support import new_instance

READ_SECONDS = 1
IDLE_SECONDS = 1
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module", params=STACKS)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[ServerThread, Instance, str]]:
    """A server on each HTTP stack (``serve --http``): every defence holds on both."""
    inst = new_instance(Path(tmp_path_factory.mktemp("slow")) / "home")
    inst.limits = dataclasses.replace(
        inst.limits, body_read_seconds=READ_SECONDS, idle_seconds=IDLE_SECONDS, max_header_bytes=MAX_HEADER_BYTES
    )
    _, token = tokens.create_token(inst, name="admin", role="admin", actor="test")
    try:
        with ServerThread(inst, http=request.param) as srv:
            yield srv, inst, token
    finally:
        inst.close()


def _connect(srv: ServerThread, inst: Instance) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(inst.cas.cert_path("root")))
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=srv.host)


def _read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _answer(data: bytes) -> tuple[int, dict[str, str], dict[str, dict[str, str]]]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _post_head(token: str, length: int) -> bytes:
    return (
        f"POST /api/v1/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_trickled_past_the_deadline_gets_408_request_timeout_and_is_closed(
    server: tuple[ServerThread, Instance, str],
) -> None:
    srv, inst, token = server
    body = json.dumps({"id": "slow", "name": "Slow"}).encode()
    with _connect(srv, inst) as sock:
        sock.sendall(_post_head(token, len(body)))
        started = time.monotonic()
        sock.settimeout(0.3)
        answer = b""
        for byte in body:  # one byte every 0.3 s: the whole body would take about 8 s
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            if answer:
                break
        sock.settimeout(10)
        answer += _read_all(sock)
        elapsed = time.monotonic() - started
    status, headers, error = _answer(answer)
    assert (status, error["error"]["code"]) == (408, "request_timeout")
    assert headers["connection"] == "close"
    assert READ_SECONDS <= elapsed < READ_SECONDS + 3
    assert ERROR_STATUS["request_timeout"] == 408
    from fabguard.service.catalog import product_catalog

    assert all(p.id != "slow" for p in product_catalog.list_products(inst))  # nothing was created


def test_a_body_sent_in_time_is_served(server: tuple[ServerThread, Instance, str]) -> None:
    srv, inst, token = server
    body = json.dumps({"id": "quick", "name": "Quick"}).encode()
    with _connect(srv, inst) as sock:
        sock.sendall(_post_head(token, len(body)) + body[:5])
        time.sleep(READ_SECONDS / 3)
        sock.sendall(body[5:])
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 201")


def test_headers_over_the_limit_get_431_headers_too_large(server: tuple[ServerThread, Instance, str]) -> None:
    srv, inst, _ = server
    with _connect(srv, inst) as sock:
        sock.sendall(
            b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n\r\n"
        )
        status, headers, error = _answer(_read_all(sock))
    assert (status, error["error"]["code"], headers["connection"]) == (431, "headers_too_large", "close")


def test_a_request_h11_cannot_read_gets_400_malformed_request(server: tuple[ServerThread, Instance, str]) -> None:
    srv, inst, _ = server
    with _connect(srv, inst) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, error = _answer(_read_all(sock))
    assert (status, error["error"]["code"]) == (400, "malformed_request")


@pytest.mark.parametrize("sent", [b"", b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "slow-headers"])
def test_a_first_request_whose_headers_never_complete_is_closed(
    server: tuple[ServerThread, Instance, str], sent: bytes
) -> None:
    srv, inst, _ = server
    with _connect(srv, inst) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert _read_all(sock) == b""  # closed, without an answer
        assert time.monotonic() - started < IDLE_SECONDS + 3


def test_headers_within_the_limit_are_served(server: tuple[ServerThread, Instance, str]) -> None:
    srv, inst, _ = server
    with _connect(srv, inst) as sock:
        sock.sendall(
            b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_headers_that_keep_coming_past_the_limit_get_431_before_they_end(
    server: tuple[ServerThread, Instance, str],
) -> None:
    srv, inst, _ = server
    with _connect(srv, inst) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(4):  # past the limit, the head still open (no blank line)
            sock.sendall(b"X-Pad: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n")
            time.sleep(0.05)
        status, headers, error = _answer(_read_all(sock))
        elapsed = time.monotonic() - started
    assert (status, error["error"]["code"], headers["connection"]) == (431, "headers_too_large", "close")
    assert elapsed < IDLE_SECONDS  # refused for its size, not closed by the headers' deadline
